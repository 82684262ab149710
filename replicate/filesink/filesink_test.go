package filesink

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/filelog"
	"github.com/hakit/hakit/storage/memstore"
)

func recs(from, n int) []replicate.Record {
	var out []replicate.Record
	for i := from; i < from+n; i++ {
		out = append(out, replicate.Record{Pos: filelog.EncodePosition(1, uint64(100+i)), Data: []byte(fmt.Sprintf("r%d", i))})
	}
	return out
}

func mustOpen(t *testing.T, path string) *Sink {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func checkData(t *testing.T, path string, want []replicate.Record) {
	t.Helper()
	got, err := ReadRecords(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("%d records in %s, want %d", len(got), path, len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i].Data) {
			t.Fatalf("record %d is %q, want %q", i, got[i], want[i].Data)
		}
	}
}

func TestApplyPositionReopen(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "out.log")
	s := mustOpen(t, path)
	if p, err := s.Position(ctx); err != nil || p != nil {
		t.Fatalf("new sink at %x, %v", p, err)
	}
	all := recs(0, 10)
	if err := s.Apply(ctx, 3, all[:4]); err != nil {
		t.Fatal(err)
	}
	if err := s.Apply(ctx, 3, all[4:]); err != nil {
		t.Fatal(err)
	}
	hb := replicate.Heartbeat{Pos: all[9].Pos, Time: time.Unix(123, 456).UTC()}
	if err := s.ApplyHeartbeat(ctx, 3, hb); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2 := mustOpen(t, path)
	st, err := s2.State(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(st.Pos, all[9].Pos) || st.Token != 3 || !st.Heartbeat.Equal(hb.Time) || !bytes.Equal(st.HeartPos, hb.Pos) {
		t.Fatalf("state after reopen %+v", st)
	}
	checkData(t, path, all)
}

// Two sinks on one file stand for two processes: once the newer term
// committed, the older one's writes are refused and leave no trace.
func TestStaleTokenRefused(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "out.log")
	old, cur := mustOpen(t, path), mustOpen(t, path)
	all := recs(0, 6)
	if err := old.Apply(ctx, 1, all[:2]); err != nil {
		t.Fatal(err)
	}
	if err := cur.Apply(ctx, 2, all[2:4]); err != nil {
		t.Fatal(err)
	}
	if err := old.Apply(ctx, 1, recs(100, 3)); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("stale Apply = %v", err)
	}
	if err := old.ApplyHeartbeat(ctx, 1, replicate.Heartbeat{}); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("stale heartbeat = %v", err)
	}
	if err := cur.Apply(ctx, 2, all[4:]); err != nil {
		t.Fatal(err)
	}
	checkData(t, path, all)
	if p, _ := old.Position(ctx); !bytes.Equal(p, all[5].Pos) {
		t.Fatalf("old sink sees position %x, want the committed %x", p, all[5].Pos)
	}
}

func TestOpenRefusesDamage(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, path string)
		naming string
	}{
		{"foreign data file", func(t *testing.T, path string) {
			os.Remove(path + ".state")
		}, ".state"},
		{"corrupt state", func(t *testing.T, path string) {
			b, _ := os.ReadFile(path + ".state")
			b[10] ^= 1
			os.WriteFile(path+".state", b, 0o644)
		}, ".state"},
		{"data shorter than state", func(t *testing.T, path string) {
			os.Truncate(path, 3)
		}, "out.log"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.log")
			s := mustOpen(t, path)
			if err := s.Apply(context.Background(), 1, recs(0, 3)); err != nil {
				t.Fatal(err)
			}
			s.Close()
			tc.damage(t, path)
			_, err := Open(path)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tc.naming) {
				t.Fatalf("Open = %v; want ErrCorrupt naming %q", err, tc.naming)
			}
		})
	}
}

var errCrash = errors.New("simulated crash")

// Crash at every step of a commit: the sink recovers to the last commit,
// exactly.
func TestCrashAtEachStep(t *testing.T) {
	ctx := context.Background()
	for _, step := range []string{"data-written", "data-synced", "state-written"} {
		t.Run(step, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "out.log")
			s := mustOpen(t, path)
			all := recs(0, 8)
			if err := s.Apply(ctx, 1, all[:4]); err != nil {
				t.Fatal(err)
			}
			s.crash = func(got string) error {
				if got == step {
					return errCrash
				}
				return nil
			}
			if err := s.Apply(ctx, 2, all[4:]); !errors.Is(err, errCrash) {
				t.Fatalf("Apply = %v", err)
			}
			s.Close() // the process died
			s2 := mustOpen(t, path)
			st, err := s2.State(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(st.Pos, all[3].Pos) || st.Token != 1 {
				t.Fatalf("recovered state %+v, want the first commit", st)
			}
			checkData(t, path, all[:4])
			if err := s2.Apply(ctx, 2, all[4:]); err != nil {
				t.Fatal(err)
			}
			checkData(t, path, all)
		})
	}
}

// A filelog source streamed into the file sink under repeated crashes and
// failovers (each with a larger token) ends with the target equal to the
// source, record for record.
func TestStreamExactlyOnceAcrossCrashes(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 1))
	ctx := context.Background()
	dir := t.TempDir()
	w, err := filelog.OpenWriter(filepath.Join(dir, "log"), filelog.WriterOptions{SegmentSize: 2000})
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	target := filepath.Join(dir, "out.log")
	store := memstore.New()
	var want [][]byte
	steps := []string{"data-written", "data-synced", "state-written", ""}
	crashes := 0
	defer func() { t.Logf("%d crashes injected", crashes) }()
	for round := 1; round <= 12; round++ {
		for i := 1 + rng.IntN(60); i > 0; i-- {
			d := []byte(fmt.Sprintf("round %d record %d", round, len(want)))
			want = append(want, d)
			if _, err := w.Append(d); err != nil {
				t.Fatal(err)
			}
		}
		sink := mustOpen(t, target)
		step, k := steps[rng.IntN(len(steps))], 1+rng.IntN(6)
		rctx, cancel := context.WithCancel(ctx)
		calls := 0
		sink.crash = func(got string) error {
			if got == "data-written" {
				calls++
			}
			if got == step && calls == k {
				crashes++
				cancel()
				return errCrash
			}
			return nil
		}
		s := &replicate.Stream{
			Source: &filelog.Source{Dir: filepath.Join(dir, "log"), PollInterval: time.Millisecond},
			Sink:   sink, Store: store, Key: "cp", MaxRecords: 1 + rng.IntN(10),
			CheckpointRecords: 1 + rng.IntN(30), HeartbeatInterval: -1,
		}
		done := make(chan error, 1)
		go func() { done <- s.Run(rctx, fence.Token(round)) }()
		end := w.Position()
		// Stop when the sink has caught up or the crash fired.
		deadline := time.Now().Add(20 * time.Second)
		for rctx.Err() == nil {
			if p, err := sink.Position(ctx); err == nil && bytes.Equal(p, end) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("round %d: no progress", round)
			}
			time.Sleep(time.Millisecond)
		}
		cancel()
		if err := <-done; err != nil && !errors.Is(err, errCrash) {
			t.Fatalf("round %d: %v", round, err)
		}
		sink.Close()
	}
	// A last, undisturbed term.
	sink := mustOpen(t, target)
	s := &replicate.Stream{Source: &filelog.Source{Dir: filepath.Join(dir, "log"), PollInterval: time.Millisecond}, Sink: sink, Store: store, Key: "cp", HeartbeatInterval: -1}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- s.Run(rctx, 100) }()
	end := w.Position()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if p, _ := sink.Position(ctx); bytes.Equal(p, end) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("final term did not catch up")
		}
		time.Sleep(time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got, err := ReadRecords(target)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != len(want) {
		t.Fatalf("target has %d records, source %d", len(got), len(want))
	}
	for i := range want {
		if !bytes.Equal(got[i], want[i]) {
			t.Fatalf("record %d: %q, want %q", i, got[i], want[i])
		}
	}
}

// stateFormatOne encodes st as format 1 did, before sinks had an
// identity: what a state file written by an earlier release holds.
func stateFormatOne(st State) []byte {
	b := EncodeState(State{Length: st.Length, Pos: st.Pos, Token: st.Token, Heartbeat: st.Heartbeat, HeartPos: st.HeartPos})
	b = b[:len(b)-4-8] // drop the checksum and the two empty identity fields
	b[4] = 1
	return binary.BigEndian.AppendUint32(b, crc32.Checksum(b, castagnoli))
}

// A state file of format 1 still decodes, with no identity.
func TestDecodeStateFormatOne(t *testing.T) {
	want := State{Length: 9, Pos: []byte{1}, Token: 3, Heartbeat: time.Unix(2, 0).UTC(), HeartPos: []byte{1}}
	got, err := DecodeState(stateFormatOne(want))
	if err != nil {
		t.Fatal(err)
	}
	if got.Length != want.Length || !bytes.Equal(got.Pos, want.Pos) || got.Token != want.Token || got.SinkID != "" || got.Stream != "" {
		t.Fatalf("format 1 decoded as %+v, want %+v", got, want)
	}
}

func FuzzDecodeState(f *testing.F) {
	f.Add(EncodeState(State{}))
	f.Add(EncodeState(State{Length: 99, Pos: []byte{1, 2}, Token: 4, Heartbeat: time.Unix(5, 6), HeartPos: []byte{3}, SinkID: "ab", Stream: "cp"}))
	f.Add(stateFormatOne(State{Length: 99, Pos: []byte{1, 2}, Token: 4}))
	f.Add([]byte("hkfs\x01"))
	f.Fuzz(func(t *testing.T, b []byte) {
		st, err := DecodeState(b)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("unexpected error class: %v", err)
			}
			return
		}
		if b[4] == 1 {
			if again := stateFormatOne(st); !bytes.Equal(again, b) {
				t.Fatalf("format 1 %x decodes and re-encodes to %x", b, again)
			}
			return
		}
		if again := EncodeState(st); !bytes.Equal(again, b) {
			t.Fatalf("%x decodes and re-encodes to %x", b, again)
		}
	})
}

// Two handles on one file stand for two Runs of one term, the first of
// which timed out with a batch in flight: the late batch commits after the
// second read the position, and the second's ApplyAt is refused, so no
// record is in the file twice.
func TestConditionalLateBatch(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "out.log")
	run1, run2 := mustOpen(t, path).Conditional(), mustOpen(t, path).Conditional()
	all := recs(0, 10)
	if err := run1.ApplyAt(ctx, 3, nil, all[:4]); err != nil {
		t.Fatalf("first ApplyAt at nil: %v", err)
	}
	if err := run1.ApplyAt(ctx, 3, nil, all[4:6]); !errors.Is(err, replicate.ErrPositionMismatch) {
		t.Fatalf("ApplyAt at nil on a sink with records = %v", err)
	}
	read, err := run2.Position(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := run1.ApplyAt(ctx, 3, read, all[4:7]); err != nil { // the late batch
		t.Fatal(err)
	}
	err = run2.ApplyAt(ctx, 3, read, all[4:])
	var mm *replicate.PositionMismatchError
	if !errors.As(err, &mm) || !errors.Is(err, replicate.ErrPositionMismatch) ||
		!bytes.Equal(mm.Want, all[3].Pos) || !bytes.Equal(mm.Have, all[6].Pos) || !strings.Contains(err.Error(), path) {
		t.Fatalf("ApplyAt behind the late batch = %v, want a mismatch naming %s, %x and %x", err, path, all[3].Pos, all[6].Pos)
	}
	// A mismatch under a newer token neither writes nor admits it; a
	// stale token is refused as stale wherever the sink stands.
	if err := run2.ApplyAt(ctx, 9, read, all[7:]); !errors.Is(err, replicate.ErrPositionMismatch) {
		t.Fatalf("mismatch under a newer token = %v", err)
	}
	if err := run2.ApplyAt(ctx, 2, all[6].Pos, all[7:]); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("stale token at the position = %v", err)
	}
	if st, err := run2.State(ctx); err != nil || st.Token != 3 || !bytes.Equal(st.Pos, all[6].Pos) {
		t.Fatalf("state after the refusals %+v, %v; want token 3 at %x", st, err, all[6].Pos)
	}
	checkData(t, path, all[:7])
	// The restarted run reads the position again and carries on.
	read, err = run2.Position(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := run2.ApplyAt(ctx, 3, read, all[7:]); err != nil {
		t.Fatal(err)
	}
	if err := run2.ApplyAt(ctx, 4, all[9].Pos, nil); err != nil {
		t.Fatalf("empty ApplyAt at the position: %v", err)
	}
	if err := run1.Apply(ctx, 3, nil); !errors.Is(err, fence.ErrStale) {
		t.Fatalf("the empty ApplyAt did not admit token 4: Apply under 3 = %v", err)
	}
	checkData(t, path, all)
}
