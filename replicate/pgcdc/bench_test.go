package pgcdc

import (
	"bytes"
	"context"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/pgcdc/pgcdctest"
)

// recordStream captures the pgoutput messages of a write load from a real
// server: inserts, updates and deletes on a table of common types, in
// transactions of 50 changes.
func recordStream(b *testing.B) (msgs [][]byte, changes int) {
	b.Helper()
	srv := pgcdctest.Start(b, pgcdctest.Options{})
	srv.Exec(b, "postgres", `CREATE TABLE t (id bigint PRIMARY KEY, name text, qty int, price numeric(10,2), at timestamptz, tags text[], meta jsonb)`,
		`CREATE PUBLICATION p FOR TABLE t`)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	src, err := New(Config{ConnString: srv.SuperDSN(), Slot: "rec", Publication: "p", CreateSlot: true})
	if err != nil {
		b.Fatal(err)
	}
	var mu sync.Mutex
	src.tap = func(m []byte) { mu.Lock(); msgs = append(msgs, bytes.Clone(m)); mu.Unlock() }
	cur, err := src.Open(ctx, replicate.Checkpoint{})
	if err != nil {
		b.Fatal(err)
	}
	defer cur.Close()
	c, err := pgx.Connect(ctx, srv.SuperDSN())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(context.Background())
	for _, q := range []string{
		`INSERT INTO t SELECT g, 'name ' || g, g % 100, g * 1.5, now(), ARRAY['a', 'b'], jsonb_build_object('g', g) FROM generate_series(1, 20000) g`,
		`UPDATE t SET qty = qty + 1, meta = meta || '{"u": true}' WHERE id % 2 = 0`,
		`DELETE FROM t WHERE id % 5 = 0`,
	} {
		if _, err := c.Exec(ctx, q); err != nil {
			b.Fatal(err)
		}
	}
	want := 20000 + 10000 + 4000
	for changes < want {
		recs, err := cur.Next(ctx, 100000)
		if err != nil {
			b.Fatal(err)
		}
		changes += len(recs)
	}
	mu.Lock()
	defer mu.Unlock()
	return msgs, changes
}

// BenchmarkDecode is the decode cost alone: pgoutput messages recorded
// from a real server turned into change records (Source), then those
// records decoded by a sink (Decoder), then every value decoded through
// pgtype.
func BenchmarkDecode(b *testing.B) {
	msgs, changes := recordStream(b)
	b.Run("pgoutput", func(b *testing.B) {
		b.ReportAllocs()
		n := 0
		for b.Loop() {
			d := newDecoder(DefaultMaxTransactionBytes)
			for _, m := range msgs {
				tx, err := d.decode(m)
				if err != nil {
					b.Fatal(err)
				}
				if tx != nil {
					n += len(tx.recs)
				}
			}
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
	})
	d := newDecoder(DefaultMaxTransactionBytes)
	var recs []replicate.Record
	for _, m := range msgs {
		tx, _ := d.decode(m)
		if tx != nil {
			recs = append(recs, tx.recs...)
		}
	}
	if len(recs) != changes {
		b.Fatalf("%d records from the recording, the cursor returned %d", len(recs), changes)
	}
	b.Run("change", func(b *testing.B) {
		b.ReportAllocs()
		var dec Decoder
		n := 0
		for b.Loop() {
			for _, r := range recs {
				if _, err := dec.Decode(r.Data); err != nil {
					b.Fatal(err)
				}
				n++
			}
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
	})
	b.Run("typed", func(b *testing.B) {
		b.ReportAllocs()
		var dec Decoder
		m := d.typeMap
		n := 0
		for b.Loop() {
			for _, r := range recs {
				c, err := dec.Decode(r.Data)
				if err != nil {
					b.Fatal(err)
				}
				row := c.New
				if row == nil {
					row = c.Old
				}
				for i, v := range row {
					if _, err := v.Decode(m, c.Columns[i]); err != nil && v.Kind != ValueUnchanged {
						b.Fatal(err)
					}
				}
				n++
			}
		}
		b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "records/s")
	})
}
