package pgcdc_test

import (
	"context"
	"fmt"
	"log"
	"time"

	"github.com/hakit/hakit/ha"
	"github.com/hakit/hakit/lease/clock"
	"github.com/hakit/hakit/lease/memlease"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/pgcdc"
	"github.com/hakit/hakit/replicate/pgsink"
	"github.com/hakit/hakit/storage/memstore"
)

// A PostgreSQL to PostgreSQL pipeline: the source reads publication "app"
// through slot "app_cdc", the sink applies each source transaction to the
// target's tables with the stream's position, and the Stream keeps a
// checkpoint. An ha.Node runs the Stream as its work with RunTerm, under
// the term's fencing token, on the member that holds the lease. In a real
// deployment the elector and the Store are shared by the members
// (raftlease and its group's store, or etcdlease and etcdstore: see ha's
// examples). It needs two servers, so it is not run here.
func Example() {
	src, err := pgcdc.New(pgcdc.Config{
		ConnString:     "postgres://cdc@source:5432/app?sslmode=verify-full",
		Slot:           "app_cdc",
		Publication:    "app",
		InitialLoad:    true, // copy the tables first, consistently with the slot's start
		HeartbeatTable: "public.hakit_heartbeat",
	})
	if err != nil {
		log.Fatal(err)
	}
	sink, err := pgsink.New(pgsink.Config{
		ConnString:     "postgres://apply@target:5432/app?sslmode=verify-full",
		Stream:         "app",
		HeartbeatTable: "public.hakit_heartbeat",
	})
	if err != nil {
		log.Fatal(err)
	}
	defer sink.Close()
	ctx := context.Background()
	if err := src.Setup(ctx, "public.orders", "public.customers"); err != nil { // publication and heartbeat table
		log.Fatal(err)
	}
	if err := sink.Setup(ctx); err != nil { // the position table
		log.Fatal(err)
	}
	stream := &replicate.Stream{Source: src, Sink: sink, Store: memstore.New(), Key: "app/checkpoint", MaxRecords: 5000}

	// An elector within this process; members on several machines use
	// raftlease or etcdlease.
	election, err := memlease.NewElection(clock.Real(), memlease.Options{TTL: 2 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	elector, err := election.Member("a", "https://a.example:8443")
	if err != nil {
		log.Fatal(err)
	}
	node, err := ha.New(ha.Config{ID: "a", Elector: elector, Work: stream.RunTerm})
	if err != nil {
		log.Fatal(err)
	}
	if err := node.Run(ctx); err != nil { // until ctx ends
		log.Fatal(err)
	}
	fmt.Println(sink.Stats().Latency)
}

// Records carry one row change each; a Decoder reads them.
func ExampleDecoder() {
	data := pgcdc.EncodeChange(&pgcdc.Change{
		Op: pgcdc.OpUpdate, XID: 731, CommitLSN: 0x16B3748, CommitTime: time.Date(2024, 5, 1, 10, 0, 0, 0, time.UTC),
		Schema: "public", Table: "accounts",
		Columns: []pgcdc.Column{{Name: "id", Type: 20, TypeMod: -1, Key: true}, {Name: "balance", Type: 1700, TypeMod: -1}},
		New:     []pgcdc.Value{{Kind: pgcdc.ValueText, Text: []byte("42")}, {Kind: pgcdc.ValueText, Text: []byte("99.50")}},
	})
	var d pgcdc.Decoder
	c, err := d.Decode(data)
	if err != nil {
		log.Fatal(err)
	}
	id, _ := c.New[0].Decode(nil, c.Columns[0])
	fmt.Printf("%s %s.%s id=%v (%T) balance=%s commit %s\n", c.Op, c.Schema, c.Table, id, id, c.New[1].Text, c.CommitLSN)
	// Output: update public.accounts id=42 (int64) balance=99.50 commit 0/16B3748
}

// Positions are compared as LSNs, then by the change's place in its
// transaction; they print in PostgreSQL's X/X form.
func ExampleCompare() {
	a := pgcdc.Pos{LSN: 0x16B3748, Seq: 2}.Encode()
	b := pgcdc.Pos{LSN: 0x16B3748, Seq: 3, Last: true}.Encode()
	fmt.Println(pgcdc.Compare(a, b), pgcdc.FormatPos(b))
	// Output: -1 0/16B3748#3!
}
