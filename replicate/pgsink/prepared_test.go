package pgsink

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/pgcdc"
	"github.com/hakit/hakit/replicate/pgcdc/pgcdctest"
)

// A long session prepares a statement per table, row count and column
// set; the session keeps a bounded number of them, here and on the
// server.
func TestPreparedStatementsBounded(t *testing.T) {
	t.Parallel() // starts its own server
	srv := pgcdctest.Start(t, pgcdctest.Options{})
	srv.Exec(t, "postgres", `CREATE DATABASE app`)
	srv.Exec(t, "app", `CREATE TABLE a (id int PRIMARY KEY, v text)`)
	s, err := New(Config{ConnString: srv.DSN("postgres", pgcdctest.SuperPassword, "app"), Stream: "p"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	s.maxPrepared = 4
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := s.Setup(ctx); err != nil {
		t.Fatal(err)
	}
	cols := []pgcdc.Column{{Name: "id", Type: 23, TypeMod: -1, Key: true}, {Name: "v", Type: 25, TypeMod: -1}}
	var at replicate.Position
	id := 0
	for n := 1; n <= 12; n++ { // inserts of 1, 2, ... rows: a statement each
		var batch []replicate.Record
		for range n {
			id++
			data := pgcdc.EncodeChange(&pgcdc.Change{Op: pgcdc.OpInsert, Schema: "public", Table: "a", Columns: cols,
				New: []pgcdc.Value{{Kind: pgcdc.ValueText, Text: []byte(strconv.Itoa(id))}, {Kind: pgcdc.ValueNull}}})
			batch = append(batch, replicate.Record{Pos: pgcdc.Pos{LSN: pgcdc.LSN(id), Seq: 1, Last: true}.Encode(), Data: data})
		}
		if err := s.ApplyAt(ctx, 1, at, batch); err != nil {
			t.Fatal(err)
		}
		at = batch[len(batch)-1].Pos
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	var onServer int
	if err := s.conn.QueryRow(ctx, `SELECT count(*) FROM pg_prepared_statements WHERE name LIKE 'hakit_%'`).Scan(&onServer); err != nil {
		t.Fatal(err)
	}
	// The bound is checked before each transaction, which may add its
	// own statements (the claim, one insert).
	if here := len(s.sess.prepared); here > s.maxPrepared+2 || onServer != here {
		t.Errorf("%d statements known here, %d on the server; bound %d", here, onServer, s.maxPrepared)
	}
}
