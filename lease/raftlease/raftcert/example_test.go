package raftcert_test

import (
	"fmt"
	"log"
	"time"

	"github.com/hakit/hakit/lease/raftlease/raftcert"
)

// A CA for one group, and the mutual-TLS configuration of its member
// "replicator-1", ready for raftlease.Config.TLS.
func Example() {
	ca, err := raftcert.NewCA("replication group CA", 365*24*time.Hour)
	if err != nil {
		log.Fatal(err)
	}
	cert, err := ca.Issue("replicator-1", 90*24*time.Hour)
	if err != nil {
		log.Fatal(err)
	}
	tlsConfig := ca.Config(cert) // raftlease.Config{TLS: tlsConfig, ...}
	id, _ := raftcert.MemberID(cert.Leaf)
	fmt.Println(id, cert.Leaf.URIs[0], len(tlsConfig.Certificates))
	// Output: replicator-1 hakit://member/replicator-1 1
}
