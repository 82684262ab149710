package main

import "regexp"

var pgIdentRE = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// source checks the source block of its kind.
func (v *violations) source(s *SourceConfig) {
	switch s.Kind {
	case SourceFilelog:
		v.require("source.dir", s.Dir)
		v.nonNegative("source.poll_interval", s.PollInterval.D())
		if s.Postgres != nil {
			v.add("source.postgres", "is for kind %q; this source is %q", SourcePostgres, s.Kind)
		}
	case SourcePostgres:
		if s.Dir != "" {
			v.add("source.dir", "is for kind %q; this source is %q", SourceFilelog, s.Kind)
		}
		p := s.Postgres
		if p == nil {
			v.add("source.postgres", "is required with kind %q (dsn_file, slot, publication)", SourcePostgres)
			return
		}
		v.require("source.postgres.dsn_file", p.DSNFile)
		for _, f := range []struct{ field, name string }{{"source.postgres.slot", p.Slot}, {"source.postgres.publication", p.Publication}} {
			if !pgIdentRE.MatchString(f.name) {
				v.add(f.field, "must be a lower-case identifier of letters, digits and underscores, not %q", f.name)
			}
		}
		v.nonNegative("source.postgres.heartbeat_interval", p.HeartbeatInterval.D())
		v.nonNegative("source.postgres.slot_wait", p.SlotWait.D())
		if p.MaxTransaction < 0 {
			v.add("source.postgres.max_transaction_bytes", "must not be negative")
		}
	default:
		v.add("source.kind", "must be %q or %q, not %q", SourceFilelog, SourcePostgres, s.Kind)
	}
}

// sink checks the sink block of its kind against the source's kind.
func (v *violations) sink(s *SinkConfig, sourceKind string) {
	switch s.Kind {
	case SinkFile:
		v.require("sink.path", s.Path)
		if s.Postgres != nil {
			v.add("sink", "set exactly one of path and postgres")
		}
	case SinkSQL, SinkPostgres:
		if s.Path != "" {
			v.add("sink", "set exactly one of path and postgres")
		}
		if s.Postgres == nil {
			v.add("sink.postgres", "is required with kind %q (dsn_file)", s.Kind)
			return
		}
		v.require("sink.postgres.dsn_file", s.Postgres.DSNFile)
		if s.Kind == SinkPostgres {
			if sourceKind != SourcePostgres {
				v.add("sink.kind", "%q applies PostgreSQL row changes and needs source.kind %q, not %q", SinkPostgres, SourcePostgres, sourceKind)
			}
			if s.Postgres.RecordTable != "" {
				v.add("sink.postgres.record_table", "is for kind %q; this sink applies row changes to the mirrored tables", SinkSQL)
			}
		} else if s.Postgres.HeartbeatTable != "" {
			v.add("sink.postgres.heartbeat_table", "is for kind %q", SinkPostgres)
		}
	default:
		v.add("sink.kind", "must be %q, %q or %q, not %q", SinkFile, SinkSQL, SinkPostgres, s.Kind)
	}
}
