//go:build unix

package filestore_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/filestore"
	"github.com/hakit/hakit/storage/storagetest"
)

// The tests in this file re-execute the test binary as helper processes:
// real processes, each with its own Backend and its own file lock, on one
// directory, the way several hosts share a volume.

const helperEnv = "FILESTORE_TEST_HELPER"

func TestMain(m *testing.M) {
	switch os.Getenv(helperEnv) {
	case "":
		os.Exit(m.Run())
	case "writer":
		os.Exit(helperWriter())
	case "committer":
		os.Exit(helperCommitter())
	default:
		fmt.Fprintf(os.Stderr, "unknown helper %q\n", os.Getenv(helperEnv))
		os.Exit(2)
	}
}

func monotonic() int64 {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_MONOTONIC, &ts); err != nil {
		panic(err)
	}
	return ts.Nano()
}

func envInt(name string) int {
	n, err := strconv.Atoi(os.Getenv(name))
	if err != nil {
		panic(fmt.Sprintf("%s: %v", name, err))
	}
	return n
}

// helperWriter writes with interleaved tokens (process i of p uses
// i+1, i+1+p, ...) to a shared key and its own key, and prints every call
// with its monotonic call and return times and its outcome.
func helperWriter() int {
	ctx := context.Background()
	i, procs, rounds := envInt("FS_INDEX"), envInt("FS_PROCS"), envInt("FS_ROUNDS")
	b, err := filestore.Open(ctx, os.Getenv("FS_DIR"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	defer b.Close()
	s := storage.Fenced(b)
	// Wait for the start signal, so that the processes overlap.
	if _, err := os.Stdin.Read(make([]byte, 1)); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for r := range rounds {
		tok := fence.Token(r*procs + i + 1)
		for _, key := range []string{"shared", fmt.Sprintf("own/%d", i)} {
			value := fmt.Sprintf("p%d-r%d", i, r)
			call := monotonic()
			_, err := s.Put(ctx, tok, key, []byte(value))
			ret := monotonic()
			result := "ok"
			switch {
			case errors.Is(err, fence.ErrStale):
				result = "stale"
			case err != nil:
				fmt.Fprintf(os.Stderr, "Put(%d, %q): %v\n", tok, key, err)
				return 2
			}
			fmt.Fprintf(out, "put %d %d %d %s %s %s\n", call, ret, tok, key, value, result)
		}
		call := monotonic()
		it, err := s.Get(ctx, "shared")
		ret := monotonic()
		switch {
		case errors.Is(err, storage.ErrNotFound):
			fmt.Fprintf(out, "get %d %d 0 shared - notfound\n", call, ret)
		case err != nil:
			fmt.Fprintf(os.Stderr, "Get(shared): %v\n", err)
			return 2
		default:
			fmt.Fprintf(out, "get %d %d 0 shared %s ok\n", call, ret, it.Value)
		}
	}
	return 0
}

// helperCommitter commits {x: n, y: n} in a loop with two-key commits
// and prints "ack n" after each returns, until it is killed.
func helperCommitter() int {
	ctx := context.Background()
	b, err := filestore.Open(ctx, os.Getenv("FS_DIR"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 2
	}
	prefix := os.Getenv("FS_PREFIX")
	for n := 0; ; n++ {
		val := []byte(fmt.Sprintf("%s %d", prefix, n))
		if _, err := b.Commit(ctx, nil, []storage.Op{{Key: "x", Value: val}, {Key: "y", Value: val}}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 2
		}
		// One line per write, unbuffered: an ack printed is a commit
		// returned.
		fmt.Printf("ack %d\n", n)
	}
}

func helper(t *testing.T, mode string, env ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.CommandContext(t.Context(), os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), append([]string{helperEnv + "=" + mode}, env...)...)
	cmd.Stderr = &strings.Builder{}
	return cmd
}

func TestMultiProcessWriters(t *testing.T) {
	const procs = 3
	rounds := 15
	dir := newDir(t)
	cmds := make([]*exec.Cmd, procs)
	stdins := make([]io.WriteCloser, procs)
	outs := make([]*strings.Builder, procs)
	for i := range procs {
		cmd := helper(t, "writer", "FS_DIR="+dir, fmt.Sprintf("FS_INDEX=%d", i), fmt.Sprintf("FS_PROCS=%d", procs), fmt.Sprintf("FS_ROUNDS=%d", rounds))
		outs[i] = &strings.Builder{}
		cmd.Stdout = outs[i]
		in, err := cmd.StdinPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		cmds[i], stdins[i] = cmd, in
	}
	for _, in := range stdins {
		_, _ = in.Write([]byte("g"))
		_ = in.Close()
	}
	for i, cmd := range cmds {
		if err := cmd.Wait(); err != nil {
			t.Fatalf("writer %d: %v; stderr:\n%s", i, err, cmd.Stderr)
		}
	}

	var calls []storagetest.Call
	for i, out := range outs {
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n") {
			c := storagetest.Call{Client: i}
			var op, result string
			if _, err := fmt.Sscanf(line, "%s %d %d %d %s %s %s", &op, &c.Start, &c.End, &c.Token, &c.Key, &c.Value, &result); err != nil {
				t.Fatalf("writer %d printed %q: %v", i, line, err)
			}
			c.Get = op == "get"
			c.OK, c.Stale, c.NotFound = result == "ok", result == "stale", result == "notfound"
			if c.NotFound {
				c.Value = ""
			}
			calls = append(calls, c)
		}
	}
	if len(calls) != procs*rounds*3 {
		t.Fatalf("%d calls recorded, want %d", len(calls), procs*rounds*3)
	}
	var admitted []storagetest.Call
	stale := 0
	for _, c := range calls {
		switch {
		case c.Get:
		case c.OK:
			admitted = append(admitted, c)
		default:
			stale++
		}
	}
	t.Logf("%d writes admitted, %d refused as stale", len(admitted), stale)
	// Tokens never go down across processes, and the history of all
	// processes' calls is linearizable.
	storagetest.CheckHistory(t, calls)

	// No acknowledged write lost.
	b := open(t, dir)
	s := storage.Fenced(b)
	var maxTok fence.Token
	sharedTok := map[string]fence.Token{}
	lastOwn := map[string]string{}
	for _, c := range admitted {
		maxTok = max(maxTok, c.Token)
		if c.Key == "shared" {
			sharedTok[c.Value] = c.Token
		} else {
			lastOwn[c.Key] = c.Value // one process's calls are sequential
		}
	}
	for i := range procs {
		key := fmt.Sprintf("own/%d", i)
		it, err := s.Get(t.Context(), key)
		want, ok := lastOwn[key]
		switch {
		case !ok && !errors.Is(err, storage.ErrNotFound):
			t.Errorf("Get(%q) = %q, %v; no write was admitted there", key, it.Value, err)
		case ok && (err != nil || string(it.Value) != want):
			t.Errorf("Get(%q) = %q, %v; want the last admitted %q", key, it.Value, err, want)
		}
	}
	it, err := s.Get(t.Context(), "shared")
	if err != nil {
		t.Fatal(err)
	}
	var sharedMax fence.Token
	for _, tok := range sharedTok {
		sharedMax = max(sharedMax, tok)
	}
	if tok := sharedTok[string(it.Value)]; tok != sharedMax {
		t.Errorf("shared holds %q (token %d), want the value admitted with the highest token %d", it.Value, tok, sharedMax)
	}
	rec, err := b.Get(t.Context(), storage.DefaultFenceKey)
	if err != nil {
		t.Fatal(err)
	}
	if tok, err := storage.DecodeFence(rec.Value); err != nil || tok != maxTok {
		t.Errorf("fence record = %d, %v; want the highest admitted token %d", tok, err, maxTok)
	}
	if _, err := s.Put(t.Context(), maxTok-1, "shared", nil); !errors.Is(err, fence.ErrStale) {
		t.Errorf("Put below the fence after the run: %v", err)
	}
}

// TestKillDuringCommits kills a process that is committing two keys at a
// time with SIGKILL, at whatever point it has reached, and checks that
// the directory always holds a whole commit at least as new as the last
// one acknowledged.
func TestKillDuringCommits(t *testing.T) {
	dir := newDir(t)
	journals := 0
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, seed))
	defer func() { t.Logf("%d of 5 kills left a journal to finish", journals) }()
	for iter := range 5 {
		prefix := fmt.Sprintf("iter%d", iter)
		cmd := helper(t, "committer", "FS_DIR="+dir, "FS_PREFIX="+prefix)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		// Backends open before the kill: their Gets, not an Open, must
		// finish a commit the killed process left in its journal, and
		// they race each other to do it.
		readers := make([]*filestore.Backend, 3)
		for i := range readers {
			b, err := filestore.Open(t.Context(), dir)
			if err != nil {
				t.Fatal(err)
			}
			readers[i] = b
		}
		sc := bufio.NewScanner(stdout)
		last, target := -1, 10+3*iter
		var first time.Time
		for sc.Scan() {
			if _, err := fmt.Sscanf(sc.Text(), "ack %d", &last); err != nil {
				t.Fatalf("committer printed %q", sc.Text())
			}
			if last == 0 {
				first = time.Now()
			}
			if last == target {
				// Kill at a random point of a commit: a random fraction of
				// the mean time between acks from now. The acks printed
				// before the process dies are still read below.
				mean := time.Since(first) / time.Duration(target)
				delay := time.Duration(rng.Int64N(int64(mean) + 1))
				time.AfterFunc(delay, func() { _ = cmd.Process.Kill() })
			}
		}
		if err := cmd.Wait(); err == nil || last < target {
			t.Fatalf("committer ended after ack %d (%v), not by SIGKILL; stderr:\n%s", last, err, cmd.Stderr)
		}

		if _, err := os.Stat(filepath.Join(dir, "JOURNAL")); err == nil {
			journals++
		}
		items := make([][2]storage.Item, len(readers))
		errs := make([]error, len(readers))
		var wg sync.WaitGroup
		for i, r := range readers {
			wg.Go(func() {
				var errx, erry error
				items[i][0], errx = r.Get(t.Context(), "x")
				items[i][1], erry = r.Get(t.Context(), "y")
				errs[i] = errors.Join(errx, erry)
			})
		}
		wg.Wait()
		for i, r := range readers {
			_ = r.Close()
			if errs[i] != nil {
				t.Fatalf("iteration %d: reader %d: Get after SIGKILL: %v", iter, i, errs[i])
			}
			for j, name := range []string{"x", "y"} {
				if a, b := items[i][j], items[0][j]; string(a.Value) != string(b.Value) || a.Version != b.Version {
					t.Fatalf("iteration %d: readers 0 and %d disagree on %s: %q v%d and %q v%d", iter, i, name, b.Value, b.Version, a.Value, a.Version)
				}
			}
		}
		x, y := items[0][0], items[0][1]
		if string(x.Value) != string(y.Value) || x.Version != y.Version {
			t.Fatalf("iteration %d: x = %q v%d, y = %q v%d: a torn commit", iter, x.Value, x.Version, y.Value, y.Version)
		}
		var gotPrefix string
		var n int
		if _, err := fmt.Sscanf(string(x.Value), "%s %d", &gotPrefix, &n); err != nil || gotPrefix != prefix || n < last {
			t.Fatalf("iteration %d: x = %q after acknowledging %q %d: an acknowledged commit was lost", iter, x.Value, prefix, last)
		}
	}
}
