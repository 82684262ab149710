package main

import (
	"fmt"
	"os"
	"strings"
)

// A configuration is checked as a whole: every field that breaks a rule
// is named, with the rule.
func ExampleConfig_Validate() {
	c, err := ParseConfig(strings.NewReader(`{
	  "id": "a",
	  "listen": "127.0.0.1:8080",
	  "members": {"a": {"api": "http://127.0.0.1:8080", "raft": "127.0.0.1:7400"}},
	  "source": {"dir": "/srv/changes"},
	  "raft": {"data_dir": "/var/lib/hamirror", "election_ticks": 2},
	  "log": {"format": "yaml"}
	}`))
	if err != nil {
		panic(err)
	}
	fmt.Println(c.Validate())
	// Output:
	// hamirror: invalid config: log.format: must be one of json, text, not "yaml"
	// hamirror: invalid config: sink.path: is required
	// hamirror: invalid config: raft.election_ticks: must be at least 3 (or 0 for the default 10)
}

// An unknown field is an error, not a silently ignored typo.
func ExampleParseConfig() {
	_, err := ParseConfig(strings.NewReader(`{"id": "a", "raft": {"datadir": "/var/lib/hamirror"}}`))
	fmt.Println(err)
	// Output:
	// hamirror: invalid config: unknown field "datadir"
}

// The status table, as "hamirror status" prints it: one row per member,
// from its /status and /replication.
func Example_statusTable() {
	active := memberRow{target: target{id: "a"}, hasRep: true}
	active.st.Role, active.st.Token, active.st.Healthy = "active", 7, true
	active.st.Leader.ID, active.st.Leader.Token = "a", 7
	active.repl = replicationStatus{Active: true, Records: 120453, LagSeconds: 0.004}
	standby := memberRow{target: target{id: "b"}, hasRep: true}
	standby.st.Role, standby.st.Healthy = "campaigning", true
	standby.st.Leader.ID, standby.st.Leader.Token = "a", 7
	down := memberRow{target: target{id: "c"}, err: fmt.Errorf("connection refused")}
	if err := printStatus(os.Stdout, []memberRow{active, standby, down}); err != nil {
		fmt.Println(err)
	}
	// Output:
	// MEMBER  ROLE         TOKEN  LEADER  LAG     RECORDS  HEALTH  NOTE
	// a       active       7      a (7)   0.004s  120453   ok
	// b       campaigning  0      a (7)   -       0        ok
	// c       unreachable  -      -       -       -        -       connection refused
}
