package pgsink_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/pgcdc"
	"github.com/hakit/hakit/replicate/pgcdc/pgcdctest"
	"github.com/hakit/hakit/replicate/pgsink"
)

func change(op pgcdc.Op, table string, cols []pgcdc.Column, newRow, oldRow []pgcdc.Value) []byte {
	return pgcdc.EncodeChange(&pgcdc.Change{Op: op, XID: 9, CommitLSN: 0x100, CommitTime: time.Now(), Schema: "public", Table: table, Columns: cols, New: newRow, Old: oldRow})
}

func text(s string) pgcdc.Value { return pgcdc.Value{Kind: pgcdc.ValueText, Text: []byte(s)} }

var colsA = []pgcdc.Column{{Name: "id", Type: 23, TypeMod: -1, Key: true}, {Name: "v", Type: 25, TypeMod: -1}}

func rec(lsn pgcdc.LSN, data []byte) replicate.Record {
	return replicate.Record{Pos: pgcdc.Pos{LSN: lsn, Seq: 1, Last: true}.Encode(), Data: data}
}

// TestSinkErrors: every way a change cannot be applied stops with an
// error naming the table, the column and the type or key, and writes
// nothing; fencing and the position condition hold.
func TestSinkErrors(t *testing.T) {
	t.Parallel() // each starts its own servers
	dst := target(t)
	sink, err := pgsink.New(pgsink.Config{ConnString: dsn(dst), Stream: "e"})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	ctx := testCtx(t, time.Minute)
	if err := sink.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	ok := rec(0x200, change(pgcdc.OpInsert, "a", colsA, []pgcdc.Value{text("1"), text("x")}, nil))
	if err := sink.ApplyAt(ctx, 5, nil, []replicate.Record{ok}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		data []byte
		want []string
		is   error
	}{
		{"missing table", change(pgcdc.OpInsert, "nope", colsA, []pgcdc.Value{text("1"), text("x")}, nil), []string{"table public.nope does not exist"}, pgsink.ErrSchema},
		{"missing column", change(pgcdc.OpInsert, "a", append(colsA[:2:2], pgcdc.Column{Name: "extra", Type: 1700, TypeMod: -1}), []pgcdc.Value{text("2"), text("x"), text("1.5")}, nil),
			[]string{`table public.a column "extra" (type numeric) does not exist in the target`}, pgsink.ErrSchema},
		{"unknown type", change(pgcdc.OpInsert, "a", []pgcdc.Column{colsA[0], {Name: "v", Type: 99999, TypeMod: -1}}, []pgcdc.Value{text("2"), text("x")}, nil),
			[]string{`table public.a column "v": type OID 99999 is not built into PostgreSQL`}, pgcdc.ErrUnsupportedType},
		{"bad value", change(pgcdc.OpInsert, "a", colsA, []pgcdc.Value{text("not a number"), text("x")}, nil), []string{"insert of public.a", "22P02"}, nil},
		{"diverged update", change(pgcdc.OpUpdate, "a", colsA, []pgcdc.Value{text("42"), text("y")}, nil), []string{"update of public.a key (id=42): no such row"}, pgsink.ErrDiverged},
		{"diverged delete", change(pgcdc.OpDelete, "a", colsA, nil, []pgcdc.Value{text("43"), {Kind: pgcdc.ValueNull}}), []string{"delete of public.a key (id=43): no such row"}, pgsink.ErrDiverged},
		{"duplicate insert", change(pgcdc.OpInsert, "a", colsA, []pgcdc.Value{text("1"), text("again")}, nil), []string{"insert of public.a", "the row is already in the target", "(id)=(1)"}, pgsink.ErrDiverged},
		{"corrupt record", []byte{1, 'I', 0}, []string{"corrupt change record"}, pgcdc.ErrCorruptChange},
	} {
		t.Run(tc.name, func(t *testing.T) {
			batch := []replicate.Record{rec(0x300, change(pgcdc.OpInsert, "a", colsA, []pgcdc.Value{text("3"), text("z")}, nil)), rec(0x301, tc.data)}
			err := sink.ApplyAt(ctx, 5, ok.Pos, batch)
			if err == nil {
				t.Fatal("applied")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not contain %q", err, w)
				}
			}
			if tc.is != nil && !errors.Is(err, tc.is) {
				t.Errorf("error %v does not match %v", err, tc.is)
			}
			if pos, err := sink.Position(ctx); err != nil || !replicate.SamePosition(pos, ok.Pos) {
				t.Errorf("position %s (%v) after a failed apply, want %s", pgcdc.FormatPos(pos), err, pgcdc.FormatPos(ok.Pos))
			}
			if n := count(t, dst, `SELECT count(*) FROM a WHERE id = 3`); n != 0 {
				t.Error("row 3 of the failed batch was written")
			}
		})
	}
	// A multi-row delete that misses a row.
	del := func(id string) []byte {
		return change(pgcdc.OpDelete, "a", colsA, nil, []pgcdc.Value{text(id), {Kind: pgcdc.ValueNull}})
	}
	err = sink.ApplyAt(ctx, 5, ok.Pos, []replicate.Record{rec(0x500, del("1")), rec(0x501, del("77")), rec(0x502, del("78"))})
	if !errors.Is(err, pgsink.ErrDiverged) || !strings.Contains(err.Error(), "delete of 3 rows of public.a (keys (id=1) to (id=78)) found 1") {
		t.Errorf("multi-row delete: %v", err)
	}
	// Upsert takes a row that is there already.
	up, err := pgsink.New(pgsink.Config{ConnString: dsn(dst), Stream: "e", Upsert: true})
	if err != nil {
		t.Fatal(err)
	}
	defer up.Close()
	again := rec(0x380, change(pgcdc.OpInsert, "a", colsA, []pgcdc.Value{text("1"), text("upserted")}, nil))
	if err := up.ApplyAt(ctx, 5, ok.Pos, []replicate.Record{again}); err != nil {
		t.Fatalf("upsert: %v", err)
	}
	if n := count(t, dst, `SELECT count(*) FROM a WHERE id = 1 AND v = 'upserted'`); n != 1 {
		t.Error("upsert did not update the row")
	}
	ok = again

	// Fencing and the condition.
	next := rec(0x400, change(pgcdc.OpInsert, "a", colsA, []pgcdc.Value{text("4"), text("w")}, nil))
	if err := sink.ApplyAt(ctx, 4, ok.Pos, []replicate.Record{next}); !errors.Is(err, fence.ErrStale) {
		t.Errorf("stale token: %v", err)
	}
	if err := sink.ApplyAt(ctx, 5, next.Pos, []replicate.Record{next}); !errors.Is(err, replicate.ErrPositionMismatch) {
		t.Errorf("wrong position: %v", err)
	}
	if err := sink.ApplyAt(ctx, 6, ok.Pos, []replicate.Record{next}); err != nil {
		t.Fatal(err)
	}
	if err := sink.Apply(ctx, 5, nil); !errors.Is(err, fence.ErrStale) {
		t.Errorf("older token after a newer one: %v", err)
	}
	row, _, err := sink.Row(context.Background())
	if err != nil || row.Token != 6 || !replicate.SamePosition(row.Pos, next.Pos) || row.SourceTime.IsZero() {
		t.Errorf("row %+v, %v", row, err)
	}
}

// TestSinkReconnects: a connection that broke while idle is replaced on
// the next call instead of failing it.
func TestSinkReconnects(t *testing.T) {
	t.Parallel() // each starts its own servers
	dst := target(t)
	proxy := pgcdctest.NewProxy(t, dst)
	sink, err := pgsink.New(pgsink.Config{ConnString: proxy.DSN(dst, "cdc", "cdc-pw", "app"), Stream: "r"})
	if err != nil {
		t.Fatal(err)
	}
	defer sink.Close()
	ctx := testCtx(t, time.Minute)
	if err := sink.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	first := rec(0x200, change(pgcdc.OpInsert, "a", colsA, []pgcdc.Value{text("1"), text("x")}, nil))
	if err := sink.ApplyAt(ctx, 1, nil, []replicate.Record{first}); err != nil {
		t.Fatal(err)
	}
	proxy.Cut()
	proxy.Restore()
	second := rec(0x300, change(pgcdc.OpInsert, "a", colsA, []pgcdc.Value{text("2"), text("y")}, nil))
	if err := sink.ApplyAt(ctx, 1, first.Pos, []replicate.Record{second}); err != nil {
		t.Fatalf("apply after the connection broke: %v", err)
	}
	if pos, err := sink.Position(ctx); err != nil || !replicate.SamePosition(pos, second.Pos) {
		t.Fatalf("position %s, %v", pgcdc.FormatPos(pos), err)
	}
}
