package pgsink_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/hakit/hakit/replicate"
	"github.com/hakit/hakit/replicate/pgcdc"
	"github.com/hakit/hakit/replicate/pgcdc/pgcdctest"
	"github.com/hakit/hakit/replicate/pgsink"
	"github.com/hakit/hakit/storage/memstore"
)

var benchSchema = []string{
	`CREATE TABLE orders (id bigint PRIMARY KEY, customer int, amount numeric(12,2), status text, created timestamptz, note text)`,
	`CREATE TABLE lines (order_id bigint, n int, sku text, qty int, PRIMARY KEY (order_id, n))`,
	`CREATE TABLE done (id int PRIMARY KEY)`,
}

// benchLoad writes the load: transactions of 20 orders with 3 lines
// each, then updates of half the orders and deletes of a tenth of the
// lines, in transactions of 100 rows, and a marker row. It returns the
// number of row changes.
func benchLoad(b *testing.B, src *pgcdctest.Server, orders int) int {
	b.Helper()
	ctx := testCtx(b, 10*time.Minute)
	c, err := pgx.Connect(ctx, src.SuperDSN())
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(context.Background())
	exec := func(q string, args ...any) {
		if _, err := c.Exec(ctx, q, args...); err != nil {
			b.Fatal(err)
		}
	}
	for from := 1; from <= orders; from += 20 {
		to := min(from+19, orders)
		exec(fmt.Sprintf(`BEGIN; INSERT INTO orders SELECT g, g %% 1000, g * 1.25, 'new', now(), 'note ' || g FROM generate_series(%d, %d) g;
			INSERT INTO lines SELECT g, n, 'sku-' || n, n FROM generate_series(%d, %d) g, generate_series(1, 3) n; COMMIT`, from, to, from, to))
	}
	for from := 2; from <= orders; from += 200 {
		exec(`UPDATE orders SET status = 'paid', amount = amount + 1 WHERE id BETWEEN $1 AND $2 AND id % 2 = 0`, from, from+199)
	}
	for from := 1; from <= orders; from += 1000 {
		exec(`DELETE FROM lines WHERE order_id BETWEEN $1 AND $2 AND order_id % 10 = 0`, from, from+999)
	}
	exec(`INSERT INTO done VALUES (1)`)
	return orders + 3*orders + orders/2 + 3*(orders/10) + 1
}

// waitDone polls for the marker row on the target database db.
func waitDone(b *testing.B, dst *pgcdctest.Server, db string, within time.Duration) {
	b.Helper()
	ctx := testCtx(b, within)
	c, err := pgx.Connect(ctx, dst.DSN("postgres", pgcdctest.SuperPassword, db))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(context.Background())
	for {
		var n int
		if err := c.QueryRow(ctx, `SELECT count(*) FROM done`).Scan(&n); err != nil {
			b.Fatalf("waiting for the load on %s: %v", db, err)
		}
		if n > 0 {
			return
		}
		time.Sleep(2 * time.Millisecond) // polling with a deadline
	}
}

// BenchmarkPGToPG measures rows per second from a PostgreSQL source to a
// PostgreSQL target through hakit (pgcdc, a replicate.Stream with a
// checkpoint every second, pgsink) and through PostgreSQL's own logical
// replication (CREATE SUBSCRIPTION), on the same load, written before
// either starts so that both drain the same WAL from slots created at the
// same point. Both targets are databases of one server.
func BenchmarkPGToPG(b *testing.B) {
	const orders = 40000
	srv := pgcdctest.StartN(b, 2, pgcdctest.Options{})
	src, dst := srv[0], srv[1]
	src.Exec(b, "postgres", benchSchema...)
	src.Exec(b, "postgres", `CREATE PUBLICATION pub FOR TABLE orders, lines, done`)
	for _, db := range []string{"hakit", "native"} {
		dst.Exec(b, "postgres", `CREATE DATABASE `+db)
		dst.Exec(b, db, benchSchema...)
	}
	var hakitRate, nativeRate float64
	for i := 0; b.Loop(); i++ {
		src.Exec(b, "postgres", `TRUNCATE orders, lines, done`, fmt.Sprintf(`SELECT pg_create_logical_replication_slot('h%d', 'pgoutput')`, i),
			fmt.Sprintf(`SELECT pg_create_logical_replication_slot('n%d', 'pgoutput')`, i))
		for _, db := range []string{"hakit", "native"} {
			dst.Exec(b, db, `TRUNCATE orders, lines, done`)
		}
		rows := benchLoad(b, src, orders)
		// Decode the load once beforehand, so that neither measurement
		// pays for reading the WAL the first time.
		src.Exec(b, "postgres", fmt.Sprintf(`SELECT pg_create_logical_replication_slot('w%d', 'pgoutput')`, i))
		src.Exec(b, "postgres", fmt.Sprintf(`SELECT count(*) FROM pg_logical_slot_get_binary_changes('w%d', NULL, NULL, 'proto_version', '1', 'publication_names', 'pub')`, i),
			fmt.Sprintf(`SELECT pg_drop_replication_slot('w%d')`, i))

		runHakit := func() time.Duration {
			source, err := pgcdc.New(pgcdc.Config{ConnString: src.SuperDSN(), Slot: fmt.Sprintf("h%d", i), Publication: "pub"})
			if err != nil {
				b.Fatal(err)
			}
			sink, err := pgsink.New(pgsink.Config{ConnString: dst.DSN("postgres", pgcdctest.SuperPassword, "hakit"), Stream: fmt.Sprintf("bench%d", i)})
			if err != nil {
				b.Fatal(err)
			}
			if err := sink.Setup(testCtx(b, 30*time.Second)); err != nil {
				b.Fatal(err)
			}
			ts := &timedSink{Sink: sink}
			s := &replicate.Stream{Source: source, Sink: ts, Store: memstore.New(), Key: "bench", MaxRecords: 5000, MaxWait: 20 * time.Millisecond, HeartbeatInterval: -1}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			start := time.Now()
			go func() { done <- s.Run(ctx, 1) }()
			waitDone(b, dst, "hakit", 5*time.Minute)
			hakit := time.Since(start)
			b.Logf("apply: %d batches, %v", ts.n.Load(), time.Duration(ts.ns.Load()))
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			sink.Close()
			return hakit
		}
		runNative := func() time.Duration {
			conn := fmt.Sprintf("host=%s port=%d user=postgres password=%s dbname=postgres sslmode=verify-full sslrootcert=%s", src.Host, src.Port, pgcdctest.SuperPassword, src.CA)
			dst.Exec(b, "native", fmt.Sprintf(`CREATE SUBSCRIPTION sub%d CONNECTION '%s' PUBLICATION pub WITH (create_slot = false, slot_name = 'n%d', copy_data = false, enabled = false)`, i, conn, i))
			start := time.Now()
			dst.Exec(b, "native", fmt.Sprintf(`ALTER SUBSCRIPTION sub%d ENABLE`, i))
			waitDone(b, dst, "native", 5*time.Minute)
			native := time.Since(start)
			dst.Exec(b, "native", fmt.Sprintf(`ALTER SUBSCRIPTION sub%d DISABLE`, i), fmt.Sprintf(`ALTER SUBSCRIPTION sub%d SET (slot_name = NONE)`, i), fmt.Sprintf(`DROP SUBSCRIPTION sub%d`, i))
			return native
		}
		// Alternate which runs first: the first reads the WAL from disk.
		var hakit, native time.Duration
		cpu := func(name string, f func() time.Duration) time.Duration {
			g0 := selfCPU()
			d := f()
			b.Logf("%s: %v, CPU of this process %v", name, d, selfCPU()-g0)
			return d
		}
		if i%2 == 0 {
			hakit, native = cpu("hakit", runHakit), cpu("native", runNative)
		} else {
			native, hakit = cpu("native", runNative), cpu("hakit", runHakit)
		}
		for _, tb := range []struct{ name, order string }{{"orders", "id"}, {"lines", "order_id, n"}} {
			h := checksumDB(b, dst, "hakit", tb.name, tb.order)
			if n := checksumDB(b, dst, "native", tb.name, tb.order); h != n {
				b.Fatalf("table %s: hakit's target %s, native's %s", tb.name, h, n)
			}
		}
		src.Exec(b, "postgres", fmt.Sprintf(`SELECT pg_drop_replication_slot('h%d')`, i), fmt.Sprintf(`SELECT pg_drop_replication_slot('n%d')`, i))
		hakitRate += float64(rows) / hakit.Seconds()
		nativeRate += float64(rows) / native.Seconds()
		b.Logf("%d row changes: hakit %v (%.0f rows/s), native %v (%.0f rows/s)", rows, hakit, float64(rows)/hakit.Seconds(), native, float64(rows)/native.Seconds())
	}
	n := float64(b.N)
	b.ReportMetric(hakitRate/n, "hakit-rows/s")
	b.ReportMetric(nativeRate/n, "native-rows/s")
	b.ReportMetric(hakitRate/nativeRate, "hakit/native")
}

func checksumDB(b *testing.B, s *pgcdctest.Server, db, table, order string) string {
	b.Helper()
	ctx := testCtx(b, time.Minute)
	c, err := pgx.Connect(ctx, s.DSN("postgres", pgcdctest.SuperPassword, db))
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close(context.Background())
	var sum *string
	if err := c.QueryRow(ctx, `SELECT md5(string_agg(t::text, '|' ORDER BY `+order+`)) FROM `+table+` t`).Scan(&sum); err != nil {
		b.Fatal(err)
	}
	if sum == nil {
		return "empty"
	}
	return *sum
}
