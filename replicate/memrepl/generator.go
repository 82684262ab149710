package memrepl

import (
	"context"
	"encoding/binary"
	"fmt"

	"github.com/hakit/hakit/replicate"
)

// Generator is a Source of N synthetic records that are made when read
// rather than stored, for load tests and benchmarks that need more records
// than fit in memory. Record i (0-based) has the position Pos(i+1) and the
// data Data(i); Data must be safe for concurrent use and may return the
// same slice for many records. After the N-th record a Cursor blocks
// until its ctx ends. A Generator is immutable once in use.
type Generator struct {
	N    uint64
	Data func(i uint64) []byte
}

var _ replicate.Comparer = (*Generator)(nil)

// Compare orders positions (replicate.Comparer).
func (g *Generator) Compare(a, b replicate.Position) int { return replicate.CompareBytes(a, b) }

// Open returns a Cursor after from.Pos; a position beyond N is an error.
func (g *Generator) Open(ctx context.Context, from replicate.Checkpoint) (replicate.Cursor, error) {
	n, err := DecodePos(from.Pos)
	if err != nil {
		return nil, err
	}
	if n > g.N {
		return nil, fmt.Errorf("%w: position %d is beyond the %d records of the generator", ErrPosition, n, g.N)
	}
	return &genCursor{g: g, next: n}, nil
}

type genCursor struct {
	g    *Generator
	next uint64
}

func (c *genCursor) Next(ctx context.Context, max int) ([]replicate.Record, error) {
	if max <= 0 {
		max = 1
	}
	if c.next >= c.g.N {
		<-ctx.Done()
		return nil, ctx.Err()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	n := int(min(uint64(max), c.g.N-c.next))
	recs := make([]replicate.Record, n)
	pos := make([]byte, 8*n)
	for i := range recs {
		p := pos[8*i : 8*i+8 : 8*i+8]
		binary.BigEndian.PutUint64(p, c.next+uint64(i)+1)
		recs[i] = replicate.Record{Pos: p, Data: c.g.Data(c.next + uint64(i))}
	}
	c.next += uint64(n)
	return recs, nil
}

func (c *genCursor) Checkpoint() replicate.Checkpoint { return replicate.Checkpoint{Pos: Pos(c.next)} }

func (c *genCursor) Close() error { return nil }
