package memlease

import (
	"context"
	"testing"
	"time"

	"github.com/hakit/hakit/lease"
	"github.com/hakit/hakit/lease/clock"
)

// BenchmarkHandover measures a term changing hands: a member resigns and
// the other member's Campaign returns, on a Fake and on the real clock.
// "channel" is the baseline: the same goroutines handing a value over
// channels with no election at all.
func BenchmarkHandover(b *testing.B) {
	for _, c := range []struct {
		name string
		clk  clock.Clock
	}{{"fake", clock.NewFake(epoch)}, {"real", clock.Real()}} {
		b.Run(c.name, func(b *testing.B) {
			e, err := NewElection(c.clk, Options{TTL: time.Hour})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			won := make(chan lease.Term)
			for _, id := range []string{"a", "b"} {
				m, _ := e.Member(id, "")
				defer m.Close()
				go func() {
					for {
						t, err := m.Campaign(ctx)
						if err != nil {
							return
						}
						select {
						case won <- t:
						case <-ctx.Done():
							return
						}
						<-t.Done() // campaign again once this term is over
					}
				}()
			}
			b.ResetTimer()
			for range b.N {
				if err := (<-won).Resign(ctx); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			cancel()
		})
	}
	b.Run("channel", func(b *testing.B) {
		won, resigned := make(chan struct{}), make(chan struct{})
		for range 2 {
			go func() {
				for range resigned {
					won <- struct{}{}
				}
			}()
		}
		for range b.N {
			resigned <- struct{}{}
			<-won
		}
		close(resigned)
	})
}
