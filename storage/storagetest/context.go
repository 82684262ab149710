package storagetest

import (
	"bytes"
	"context"
	"errors"
	"testing"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/storage"
)

func testContextCancelled(t *testing.T, s storage.Store, _ config) {
	v := mustPut(t, s, 2, "k", []byte("before"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	_, err := s.Get(ctx, "k")
	wantErr(t, "Get with a cancelled context", err, context.Canceled)
	// Token 3 is larger than any admitted: a write that failed must not
	// have admitted it either.
	_, err = s.Put(ctx, 3, "k", []byte("after"))
	wantErr(t, "Put with a cancelled context", err, context.Canceled)
	_, err = s.Put(ctx, 3, "new", []byte("after"))
	wantErr(t, "Put of a new key with a cancelled context", err, context.Canceled)
	_, err = s.CompareAndSwap(ctx, 3, "k", v, []byte("after"))
	wantErr(t, "CompareAndSwap with a cancelled context", err, context.Canceled)
	err = s.Delete(ctx, 3, "k")
	wantErr(t, "Delete with a cancelled context", err, context.Canceled)

	wantItem(t, s, "k", []byte("before"), v)
	wantAbsent(t, s, "new")
	// Token 2 is still admitted: none of the failed writes raised the fence.
	mustPut(t, s, 2, "k", []byte("token 2 still good"))
}

// testContextCancelledDuring cancels while a write is in flight. The write
// may win or lose the race, but it may not be half-done: the key holds the
// old value or the complete new one, and a write that reported success is
// there.
func testContextCancelledDuring(t *testing.T, s storage.Store, c config) {
	rounds := c.n(20, 5)
	for i := range rounds {
		old := pattern(LargeValueSize/4, byte(2*i))
		next := pattern(LargeValueSize/4, byte(2*i+1))
		mustPut(t, s, fence.Token(i+1), "k", old)

		ctx, cancel := context.WithCancel(t.Context())
		errc := make(chan error, 1)
		go func() {
			_, err := s.Put(ctx, fence.Token(i+1), "k", next)
			errc <- err
		}()
		cancel()
		err := <-errc
		got := mustGet(t, s, "k")
		switch {
		case err == nil:
			if !bytes.Equal(got.Value, next) {
				t.Fatalf("round %d: Put returned nil but Get shows %s", i, show(got.Value))
			}
		case errors.Is(err, context.Canceled):
			if !bytes.Equal(got.Value, old) && !bytes.Equal(got.Value, next) {
				t.Fatalf("round %d: cancelled Put left %s, neither the old nor the new value", i, show(got.Value))
			}
		default:
			t.Fatalf("round %d: Put with a context cancelled during the call: error %v, want nil or one matching context.Canceled", i, err)
		}
	}
}
