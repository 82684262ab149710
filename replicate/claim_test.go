package replicate_test

import (
	"bytes"
	"context"
	"errors"
	"sync"
	"testing"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/memrepl"
	"github.com/hakit/hakit/storage"
	"github.com/hakit/hakit/storage/memstore"
)

// claimRaceStore runs race once, just before the first CompareAndSwap it
// forwards: a deposed member writing between a Run's read of the
// checkpoint and its claim.
type claimRaceStore struct {
	storage.Store
	once sync.Once
	race func()
}

func (s *claimRaceStore) CompareAndSwap(ctx context.Context, t fence.Token, key string, old storage.Version, v []byte) (storage.Version, error) {
	s.once.Do(s.race)
	return s.Store.CompareAndSwap(ctx, t, key, old, v)
}

// A deposed member (token 5) that rewrites the checkpoint between a new
// Run's read of it and the Run's claim (token 7) must not keep the Run
// from claiming: the Run resumes from what is stored then, and the Store
// admits 7, so the deposed member's next write is refused.
func TestClaimRacesDeposedWriter(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		pos  uint64 // what the deposed member writes; the Run read 10
	}{
		{"same checkpoint", 10},
		{"checkpoint ahead", 12},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			inner := memstore.New()
			at := func(n uint64) []byte {
				return replicate.EncodeCheckpoint(replicate.Checkpoint{Pos: memrepl.Pos(n), Token: 5})
			}
			if _, err := inner.Put(ctx, 5, "cp", at(10)); err != nil {
				t.Fatal(err)
			}
			store := &claimRaceStore{Store: inner, race: func() {
				if _, err := inner.Put(ctx, 5, "cp", at(tc.pos)); err != nil {
					t.Error(err)
				}
			}}
			src := &memrepl.Source{}
			fill(src, 0, 15)
			sink := &memrepl.Sink{}
			s := &replicate.Stream{Source: src, Sink: sink, Store: store, Key: "cp", HeartbeatInterval: -1}
			stop := runStream(t, s, 7)
			waitRecords(t, sink, int(15-tc.pos))
			if _, err := inner.Put(ctx, 5, "other", nil); !errors.Is(err, fence.ErrStale) {
				t.Errorf("deposed write after the Run claimed = %v, want fence.ErrStale", err)
			}
			if err := stop(); err != nil {
				t.Fatalf("Run = %v", err)
			}
			if got := sink.Records(); !bytes.Equal(got[0].Pos, memrepl.Pos(tc.pos+1)) {
				t.Errorf("Run resumed at %x, want after %d", got[0].Pos, tc.pos)
			}
			if cp := loadCP(t, inner, "cp"); !bytes.Equal(cp.Pos, memrepl.Pos(15)) || cp.Token != 7 {
				t.Errorf("final checkpoint %x under token %d, want %x under 7", cp.Pos, cp.Token, memrepl.Pos(15))
			}
		})
	}
}
