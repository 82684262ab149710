package main

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// validJSON is a complete raft configuration that passes Validate.
const validJSON = `{
  "id": "a",
  "listen": "127.0.0.1:8080",
  "members": {
    "a": {"api": "http://127.0.0.1:8080", "raft": "127.0.0.1:7400"},
    "b": {"api": "http://127.0.0.1:8081", "raft": "127.0.0.1:7401"},
    "c": {"api": "http://127.0.0.1:8082", "raft": "127.0.0.1:7402"}
  },
  "source": {"dir": "/srv/changes", "poll_interval": "20ms"},
  "sink": {"path": "/mnt/target/changes.log"},
  "stream": {"checkpoint_interval": "500ms"},
  "raft": {"data_dir": "/var/lib/hamirror", "tick_interval": "100ms", "election_ticks": 10, "insecure": true}
}`

func parseValid(t *testing.T) *Config {
	t.Helper()
	c, err := ParseConfig(strings.NewReader(validJSON))
	if err != nil {
		t.Fatalf("ParseConfig(validJSON): %v", err)
	}
	return c
}

func TestValidConfig(t *testing.T) {
	c := parseValid(t)
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if c.Backend != "raft" || c.Stream.CheckpointKey != DefaultCheckpointKey || c.Log.Format != "json" || c.Log.Level != "info" {
		t.Errorf("defaults not applied: backend %q, key %q, log %+v", c.Backend, c.Stream.CheckpointKey, c.Log)
	}
	if got := c.Source.PollInterval.D(); got != 20*time.Millisecond {
		t.Errorf("source.poll_interval = %s, want 20ms", got)
	}
	if got := c.memberIDs(); strings.Join(got, ",") != "a,b,c" {
		t.Errorf("memberIDs = %v", got)
	}
}

// TestValidateNamesFieldAndRule breaks one rule at a time and checks that
// the error names the field and says what the rule is.
func TestValidateNamesFieldAndRule(t *testing.T) {
	for _, tc := range []struct {
		name   string
		mutate func(c *Config)
		want   []string // substrings of the error
	}{
		{"missing id", func(c *Config) { c.ID = "" }, []string{"id: is required"}},
		{"id not a member", func(c *Config) { c.ID = "z" }, []string{"id: must be one of the members (a, b, c)"}},
		{"listen not host:port", func(c *Config) { c.Listen = "8080" }, []string{"listen: must be host:port"}},
		{"no members", func(c *Config) { c.Members = nil }, []string{"members: at least one member"}},
		{"api without scheme", func(c *Config) { c.Members["b"] = Member{API: "10.0.0.2:80", Raft: "h:1"} }, []string{"members.b.api: must be an http:// or https:// URL"}},
		{"raft addr missing", func(c *Config) { c.Members["c"] = Member{API: "http://h:1"} }, []string{"members.c.raft: is required"}},
		{"raft addr shared", func(c *Config) { m := c.Members["b"]; m.Raft = "127.0.0.1:7400"; c.Members["b"] = m }, []string{"members.b.raft: address 127.0.0.1:7400 is also member a's"}},
		{"https required with tls", func(c *Config) { c.TLS = &TLSFiles{Cert: "c", Key: "k"} }, []string{"members.a.api: must be an https:// URL because tls is set"}},
		{"tls key without cert", func(c *Config) { c.TLS = &TLSFiles{Key: "k"} }, []string{"tls: cert and key must be set together"}},
		{"unknown backend", func(c *Config) { c.Backend = "zookeeper" }, []string{`backend: must be "raft" or "etcd", not "zookeeper"`}},
		{"raft data dir", func(c *Config) { c.Raft.DataDir = "" }, []string{"raft.data_dir: is required"}},
		{"raft election ticks", func(c *Config) { c.Raft.ElectionTicks = 2 }, []string{"raft.election_ticks: must be at least 3"}},
		{"raft negative tick", func(c *Config) { c.Raft.TickInterval = Duration(-time.Second) }, []string{"raft.tick_interval: must not be negative"}},
		{"raft mutual tls needs ca", func(c *Config) { c.Raft.TLS = &TLSFiles{Cert: "c", Key: "k"} }, []string{"raft.tls.ca: is required"}},
		{"raft plain tcp", func(c *Config) { c.Raft.Insecure = false }, []string{
			"raft.tls: is required for a group of more than one member", "hamirror certs", "raft.insecure"}},
		{"raft tls and insecure", func(c *Config) { c.Raft.TLS = &TLSFiles{Cert: "c", Key: "k", CA: "ca"} }, []string{"raft.insecure: must not be set together with raft.tls"}},
		{"etcd endpoints", func(c *Config) { c.Backend = "etcd" }, []string{"etcd.endpoints: at least one endpoint"}},
		{"etcd endpoint form", func(c *Config) { c.Backend = "etcd"; c.Etcd.Endpoints = []string{"localhost"} }, []string{"etcd.endpoints[0]: must be host:port"}},
		{"etcd ttl seconds", func(c *Config) {
			c.Backend, c.Etcd.Endpoints, c.Etcd.TTL = "etcd", []string{"http://127.0.0.1:2379"}, Duration(1500*time.Millisecond)
		}, []string{"etcd.ttl: must be a whole number of seconds"}},
		{"source dir", func(c *Config) { c.Source.Dir = " " }, []string{"source.dir: is required"}},
		{"sink path", func(c *Config) { c.Sink.Path = "" }, []string{"sink.path: is required"}},
		{"sink both kinds", func(c *Config) { c.Sink.Postgres = &PostgresConfig{DSNFile: "/etc/dsn"} }, []string{"sink: set exactly one of path and postgres"}},
		{"sink postgres dsn", func(c *Config) { c.Sink = SinkConfig{Postgres: &PostgresConfig{}} }, []string{"sink.postgres.dsn_file: is required"}},
		{"sink postgres needs a postgres source", func(c *Config) {
			c.Sink = SinkConfig{Kind: "postgres", Postgres: &PostgresConfig{DSNFile: "/etc/dsn", RecordTable: "r"}}
		}, []string{`sink.kind: "postgres" applies PostgreSQL row changes and needs source.kind "postgres", not "filelog"`, "sink.postgres.record_table: is for kind \"sql\""}},
		{"sink kind", func(c *Config) { c.Sink.Kind = "s3" }, []string{`sink.kind: must be "file", "sql" or "postgres", not "s3"`}},
		{"sink sql heartbeat", func(c *Config) {
			c.Sink = SinkConfig{Kind: "sql", Postgres: &PostgresConfig{DSNFile: "/d", HeartbeatTable: "public.hb"}}
		}, []string{`sink.postgres.heartbeat_table: is for kind "postgres"`}},
		{"source kind", func(c *Config) { c.Source.Kind = "kafka" }, []string{`source.kind: must be "filelog" or "postgres", not "kafka"`}},
		{"source postgres fields", func(c *Config) {
			c.Source = SourceConfig{Kind: "postgres", Dir: "/x", Postgres: &PGSourceConfig{Slot: "Bad-Slot", HeartbeatInterval: Duration(-time.Second)}}
		}, []string{"source.dir: is for kind \"filelog\"", "source.postgres.dsn_file: is required", `source.postgres.slot: must be a lower-case identifier`,
			`source.postgres.publication: must be a lower-case identifier of letters, digits and underscores, not ""`, "source.postgres.heartbeat_interval: must not be negative"}},
		{"source postgres block", func(c *Config) { c.Source = SourceConfig{Kind: "postgres"} }, []string{`source.postgres: is required with kind "postgres"`}},
		{"source postgres block on filelog", func(c *Config) { c.Source.Postgres = &PGSourceConfig{} }, []string{`source.postgres: is for kind "postgres"; this source is "filelog"`}},
		{"checkpoint key", func(c *Config) { c.Stream.CheckpointKey = "bad\x00key" }, []string{"stream.checkpoint_key:"}},
		{"max records", func(c *Config) { c.Stream.MaxRecords = -1 }, []string{"stream.max_records: must not be negative"}},
		{"log format", func(c *Config) { c.Log.Format = "xml" }, []string{`log.format: must be one of json, text, not "xml"`}},
		{"log level", func(c *Config) { c.Log.Level = "loud" }, []string{"log.level: must be one of debug, info, warn, error"}},
		{"check both kinds", func(c *Config) { c.HA.Checks = []CheckConfig{{Name: "x", TCP: "h:1", PIDFile: "/p"}} }, []string{"ha.checks[0]: set exactly one of tcp and pid_file"}},
		{"check duplicate name", func(c *Config) {
			c.HA.Checks = []CheckConfig{{Name: "x", TCP: "h:1"}, {Name: "x", TCP: "h:2"}}
		}, []string{`ha.checks[1].name: "x" is used by an earlier check`}},
		{"exec empty argv", func(c *Config) { c.Switchers.Exec = &ExecConfig{Promote: [][]string{{}}} }, []string{"switchers.exec.promote[0]: must be a non-empty argument vector"}},
		{"exec no commands", func(c *Config) { c.Switchers.Exec = &ExecConfig{} }, []string{"switchers.exec: needs at least one promote or demote command"}},
		{"rfc2136 fields", func(c *Config) { c.Switchers.RFC2136 = &RFC2136Config{Type: "MX"} }, []string{
			"switchers.rfc2136.server: is required", "switchers.rfc2136.zone: is required", `switchers.rfc2136.type: must be one of A, AAAA, CNAME, not "MX"`,
			"switchers.rfc2136.targets: at least one target", "switchers.rfc2136.secret_file: is required",
		}},
		{"vip address", func(c *Config) { c.Switchers.VIP = &VIPConfig{Interface: "eth0", Address: "192.0.2.10"} }, []string{"switchers.vip.address: must be an address with a prefix length"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := parseValid(t)
			tc.mutate(c)
			err := c.Validate()
			if err == nil {
				t.Fatal("Validate accepted the config")
			}
			if !errors.Is(err, ErrConfig) {
				t.Errorf("error does not match ErrConfig: %v", err)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestValidateReportsEveryViolation(t *testing.T) {
	err := (&Config{}).Validate()
	if err == nil {
		t.Fatal("the empty config passed")
	}
	for _, f := range []string{"id:", "listen:", "members:", "source.dir:", "sink.path:", "raft.data_dir:"} {
		if !strings.Contains(err.Error(), f) {
			t.Errorf("error does not name %s:\n%v", f, err)
		}
	}
}

func TestParseConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		name, json, want string
	}{
		{"unknown field", `{"id":"a","lsten":"x"}`, `unknown field "lsten"`},
		{"nested unknown field", `{"raft":{"datadir":"x"}}`, `unknown field "datadir"`},
		{"wrong type", `{"raft":{"election_ticks":"ten"}}`, "raft.election_ticks: must be a int"},
		{"number as duration", `{"raft":{"tick_interval":100}}`, `a duration must be a string such as "5s", not 100`},
		{"bad duration", `{"stream":{"checkpoint_interval":"soon"}}`, `invalid duration "soon"`},
		{"syntax", `{"id": "a",}`, "not valid JSON at byte"},
		{"trailing data", `{"id":"a"} {"id":"b"}`, "data after the configuration object"},
		{"empty", ``, "empty file"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseConfig(strings.NewReader(tc.json))
			if err == nil {
				t.Fatalf("ParseConfig(%q) succeeded", tc.json)
			}
			if !errors.Is(err, ErrConfig) || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("ParseConfig(%q) = %v, want ErrConfig containing %q", tc.json, err, tc.want)
			}
		})
	}
}

func TestLoadConfigNamesFile(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "bad.json")
	if err := os.WriteFile(p, []byte(`{"nope":1}`), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadConfig(p)
	if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), `unknown field "nope"`) {
		t.Errorf("LoadConfig = %v, want the file name and the field", err)
	}
	if _, err := LoadConfig(filepath.Join(dir, "missing.json")); !errors.Is(err, ErrConfig) {
		t.Errorf("LoadConfig(missing) = %v, want ErrConfig", err)
	}
}

// TestShippedConfigValid keeps the example configurations in this
// directory valid.
func TestShippedConfigValid(t *testing.T) {
	for _, name := range []string{"hamirror.json", "hamirror-etcd.json", "hamirror-postgres.json"} {
		c, err := LoadConfig(name)
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Validate(); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestAdminToken(t *testing.T) {
	dir := t.TempDir()
	good := filepath.Join(dir, "token")
	if err := os.WriteFile(good, []byte("  s3cret \nignored\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	if err := os.WriteFile(empty, []byte("\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := adminToken(good); err != nil || tok != "s3cret" {
		t.Errorf("adminToken(file) = %q, %v", tok, err)
	}
	if _, err := adminToken(empty); err == nil || !strings.Contains(err.Error(), "admin_token_file") {
		t.Errorf("adminToken(empty file) = %v, want an error naming admin_token_file", err)
	}
	t.Setenv(EnvAdminToken, "from-env")
	if tok, err := adminToken(""); err != nil || tok != "from-env" {
		t.Errorf("adminToken(\"\") = %q, %v, want the environment's", tok, err)
	}
}

// FuzzParseConfig: no input makes the decoder or the validator panic, and
// whatever the decoder refuses is an ErrConfig.
func FuzzParseConfig(f *testing.F) {
	f.Add([]byte(validJSON))
	f.Add([]byte(`{"backend":"etcd","etcd":{"endpoints":["http://h:1"],"ttl":"2s"}}`))
	f.Add([]byte(`{"ha":{"checks":[{"name":"x","tcp":"h:1"}]},"switchers":{"vip":{"address":"::1/128"}}}`))
	f.Add([]byte(`{"raft":{"tick_interval":"-1s"}}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(strings.NewReader(string(b)))
		if err != nil {
			if !errors.Is(err, ErrConfig) {
				t.Fatalf("ParseConfig error is not ErrConfig: %v", err)
			}
			return
		}
		if err := c.Validate(); err != nil && !errors.Is(err, ErrConfig) {
			t.Fatalf("Validate error is not ErrConfig: %v", err)
		}
	})
}

// TestWarnings: a CA shared by the API and the Raft links, and secret
// files others can read, are named at start.
func TestWarnings(t *testing.T) {
	dir := t.TempDir()
	pki := writeTestPKI(t, dir)
	token := filepath.Join(dir, "token")
	if err := os.WriteFile(token, []byte("secret\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(pki.Key, 0o640); err != nil {
		t.Fatal(err)
	}
	c := parseValid(t)
	c.AdminTokenFile = token
	c.TLS = &pki
	copyCA := filepath.Join(dir, "copy-of-ca.crt")
	b, err := os.ReadFile(pki.CA)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(copyCA, b, 0o644); err != nil {
		t.Fatal(err)
	}
	c.Raft.TLS = &TLSFiles{Cert: pki.Cert, Key: pki.Key, CA: copyCA}
	srcDSN, dstDSN := filepath.Join(dir, "source.dsn"), filepath.Join(dir, "target.dsn")
	for _, f := range []string{srcDSN, dstDSN} {
		if err := os.WriteFile(f, []byte("postgres://u:pw@h/db\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	c.Source = SourceConfig{Kind: SourcePostgres, Postgres: &PGSourceConfig{DSNFile: srcDSN, Slot: "s", Publication: "p"}}
	c.Sink = SinkConfig{Kind: SinkPostgres, Postgres: &PostgresConfig{DSNFile: dstDSN}}
	got := strings.Join(c.warnings(), "\n")
	for _, want := range []string{
		"raft.tls.ca and tls.ca share a CA",
		"admin_token_file: " + token + " holds a secret but its mode 0644 lets others read it",
		"tls.key: " + pki.Key + " holds a secret but its mode 0640",
		"raft.tls.key: " + pki.Key,
		"source.postgres.dsn_file: " + srcDSN + " holds a secret",
		"sink.postgres.dsn_file: " + dstDSN + " holds a secret",
	} {
		if !strings.Contains(got, want) {
			t.Errorf("warnings do not say %q:\n%s", want, got)
		}
	}
	if err := os.Chmod(token, 0o600); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{pki.Key, srcDSN, dstDSN} {
		if err := os.Chmod(f, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	c.Raft.TLS.CA = filepath.Join(writeRaftCerts(t), "raft-ca.crt")
	if w := c.warnings(); len(w) != 0 {
		t.Errorf("warnings for private files and separate CAs: %q", w)
	}
}
