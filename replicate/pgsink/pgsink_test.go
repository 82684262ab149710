package pgsink_test

import (
	"testing"
	"time"

	"github.com/hakit/hakit/replicate/pgcdc"
	"github.com/hakit/hakit/replicate/pgcdc/pgcdctest"
	"github.com/hakit/hakit/replicate/pgsink"
)

// TestMirror replicates every kind of change through a Stream and checks
// that the target's tables equal the source's.
func TestMirror(t *testing.T) {
	t.Parallel() // each starts its own servers
	src, dst := pair(t)
	for _, s := range []*pgcdctest.Server{src, dst} {
		s.Exec(t, "app", `CREATE TABLE parent (id int PRIMARY KEY)`, `CREATE TABLE child (id int PRIMARY KEY, parent int REFERENCES parent ON DELETE CASCADE)`,
			`GRANT ALL ON parent, child TO cdc`)
	}
	src.Exec(t, "app", `ALTER PUBLICATION pub ADD TABLE parent, child`)
	dst.Exec(t, "app", `GRANT SET ON PARAMETER session_replication_role TO cdc`)
	// ReplicaRole: the target's cascade must not delete the child rows
	// whose deletes the source sends itself.
	p := newPipeline(t, src, dst, func(c *pgcdc.Config, k *pgsink.Config) {
		c.ProgressInterval = 200 * time.Millisecond
		k.ReplicaRole = true
	})
	p.start(t, 1)
	exec(t, src,
		`INSERT INTO a SELECT g, 'v' || g FROM generate_series(1, 500) g`,
		`INSERT INTO b VALUES (1, 'x', 3.14, now(), '{"a": 1}', '{a,"b c"}', '\x00ff'), (2, 'y', NULL, NULL, NULL, NULL, NULL)`,
		`INSERT INTO full_ident VALUES (1, 'p'), (1, 'p'), (2, NULL)`)
	exec(t, src, `UPDATE a SET v = repeat('big', 5000) WHERE id <= 3`, `DELETE FROM a WHERE id BETWEEN 100 AND 199`, `UPDATE a SET id = id + 1000 WHERE id = 5`)
	exec(t, src, `UPDATE a SET id = 2000 WHERE id = 1`) // a TOASTed value left unchanged while the key moves
	exec(t, src, `UPDATE b SET n = 1 WHERE k1 = 2`, `DELETE FROM b WHERE k1 = 1`)
	// An update that leaves TOASTed values out (the source sends them as
	// unchanged, not as NULL) keeps them on the target.
	exec(t, src, `INSERT INTO b SELECT 3, 'big', 1, now(), jsonb_build_object('s', s), ARRAY[s], convert_to(s, 'UTF8')
		FROM (SELECT string_agg(md5(g::text), '') AS s FROM generate_series(1, 3000) g) x`)
	exec(t, src, `UPDATE b SET n = 2 WHERE k1 = 3`)
	exec(t, src, `UPDATE full_ident SET y = 'q' WHERE x = 2`, `DELETE FROM full_ident WHERE x = 2`)
	// Under REPLICA IDENTITY FULL two rows can be equal: an update or a
	// delete of one of them must change one row on the target too.
	exec(t, src, `INSERT INTO full_ident VALUES (1, 'p')`,
		`UPDATE full_ident SET y = 'q' WHERE ctid = (SELECT ctid FROM full_ident WHERE x = 1 AND y = 'p' LIMIT 1)`,
		`DELETE FROM full_ident WHERE ctid = (SELECT ctid FROM full_ident WHERE x = 1 AND y = 'p' LIMIT 1)`)
	exec(t, src, `INSERT INTO parent VALUES (1), (2), (3)`, `INSERT INTO child VALUES (1, 1), (2, 2), (3, 3)`)
	exec(t, src, `DELETE FROM parent WHERE id = 3`)
	exec(t, src, `INSERT INTO a VALUES (7000, 'x')`, `DELETE FROM a WHERE id = 7000`, `INSERT INTO a VALUES (7000, 'y')`)
	p.waitCaughtUp(t, src)
	for _, tb := range []struct{ name, order string }{{"a", "id"}, {"b", "k1, k2"}, {"full_ident", "x, y"}, {"child", "id"}} {
		if s, d := checksum(t, src, tb.name, tb.order), checksum(t, dst, tb.name, tb.order); s != d {
			t.Errorf("table %s: source %s, target %s", tb.name, s, d)
		}
	}
	// One TRUNCATE of two tables, one referencing the other: the target
	// refuses to truncate either alone.
	exec(t, src, `TRUNCATE a`, `TRUNCATE parent, child`)
	p.waitCaughtUp(t, src)
	for _, tb := range []string{"a", "parent", "child"} {
		if d := checksum(t, dst, tb, "1"); d != "empty" {
			t.Errorf("target %s after truncate: %s", tb, d)
		}
	}
	if err := p.stop(); err != nil {
		t.Fatal(err)
	}
	if st := p.sink.Stats(); st.Changes == 0 || st.Batches == 0 {
		t.Errorf("stats %+v", st)
	}
}

// TestHeartbeatLatency: the source's heartbeat row, replicated like any
// table, gives the sink an end-to-end latency.
func TestHeartbeatLatency(t *testing.T) {
	t.Parallel() // each starts its own servers
	src, dst := pair(t)
	for _, s := range []*pgcdctest.Server{src, dst} {
		s.Exec(t, "app", `CREATE TABLE hb (slot text PRIMARY KEY, beat timestamptz NOT NULL)`, `GRANT ALL ON hb TO cdc`)
	}
	src.Exec(t, "app", `ALTER PUBLICATION pub ADD TABLE hb`)
	p := newPipeline(t, src, dst, func(c *pgcdc.Config, k *pgsink.Config) {
		c.HeartbeatTable, c.HeartbeatInterval = "public.hb", 50*time.Millisecond
		k.HeartbeatTable = "public.hb"
	})
	if err := p.src.Setup(testCtx(t, 30*time.Second)); err != nil { // finds hb and the publication in place
		t.Fatal(err)
	}
	p.start(t, 1)
	deadline := time.Now().Add(30 * time.Second)
	for p.sink.Stats().Heartbeats < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("sink applied %d heartbeats, source wrote %d", p.sink.Stats().Heartbeats, p.src.Stats().Heartbeats)
		}
		time.Sleep(20 * time.Millisecond) // polling with a deadline
	}
	st := p.sink.Stats()
	if st.Latency <= 0 || st.Latency > 30*time.Second || st.HeartbeatAt.IsZero() {
		t.Errorf("latency %v at %v", st.Latency, st.HeartbeatAt)
	}
	if n := count(t, dst, `SELECT count(*) FROM hb WHERE slot = 's'`); n != 1 {
		t.Errorf("heartbeat row not replicated: %d rows", n)
	}
}
