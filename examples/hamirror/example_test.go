package main

import (
	"fmt"
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
