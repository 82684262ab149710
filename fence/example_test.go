package fence_test

import (
	"errors"
	"fmt"

	"github.com/hakit/hakit/fence"
)

// A resource guarded in memory: once term 7 has written, the deposed
// member of term 6 can no longer write, whatever its clock says.
func ExampleGuard() {
	var g fence.Guard
	fmt.Println(g.Admit(6)) // the old leader writes
	fmt.Println(g.Admit(7)) // its successor writes
	err := g.Admit(6)       // the old leader wakes from a long pause
	fmt.Println(err)
	fmt.Println(errors.Is(err, fence.ErrStale), g.High())
	// Output:
	// <nil>
	// <nil>
	// fence: stale token 6: token 7 already admitted
	// true 7
}

func ExampleStaleError() {
	var g fence.Guard
	_ = g.Admit(12)
	var se *fence.StaleError
	if errors.As(g.Admit(10), &se) {
		fmt.Printf("refused %d, %d already admitted\n", se.Token, se.High)
	}
	// Output: refused 10, 12 already admitted
}

func ExampleParse() {
	t, err := fence.Parse("42")
	fmt.Println(t, err)
	_, err = fence.Parse("042")
	fmt.Println(errors.Is(err, fence.ErrMalformed), err)
	// Output:
	// 42 <nil>
	// true fence: malformed token: parse "042": leading zero
}

// Encodings compare byte-wise in token order, so a store that only
// compares bytes (etcd's transactions) can still compare tokens.
func ExampleToken_Bytes() {
	fmt.Printf("%x\n", fence.Token(258).Bytes())
	t, err := fence.Decode(fence.Token(258).Bytes())
	fmt.Println(t, err)
	// Output:
	// 0000000000000102
	// 258 <nil>
}
