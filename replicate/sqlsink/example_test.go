package sqlsink_test

import (
	"context"
	"database/sql"
	"log"

	"github.com/hakit/hakit/fence"
	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/memrepl"
	"github.com/hakit/hakit/replicate/sqlsink"
	"github.com/hakit/hakit/storage/memstore"
)

// Apply change records to an application table, in the same transaction
// that advances the stream's fenced position. (Needs a PostgreSQL server,
// so it is compiled but not run.)
func Example() {
	ctx := context.Background()
	db, err := sqlsink.OpenPostgres("postgres://replicator@db.example:5432/app?sslmode=verify-full")
	if err != nil {
		log.Fatal(err)
	}
	defer db.Close()
	sink, err := sqlsink.New(sqlsink.Config{
		DB:     db,
		Stream: "orders",
		ApplyFunc: func(ctx context.Context, tx *sql.Tx, batch []replicate.Record) error {
			for _, r := range batch {
				if _, err := tx.ExecContext(ctx, `INSERT INTO order_events (payload) VALUES ($1)`, r.Data); err != nil {
					return err
				}
			}
			return nil
		},
	})
	if err != nil {
		log.Fatal(err)
	}
	if err := sink.Setup(ctx); err != nil { // creates the position table
		log.Fatal(err)
	}
	stream := &replicate.Stream{Source: &memrepl.Source{}, Sink: sink, Store: memstore.New(), Key: "orders/checkpoint"}
	var token fence.Token = 1 // from the current lease term
	if err := stream.Run(ctx, token); err != nil {
		log.Fatal(err)
	}
}
