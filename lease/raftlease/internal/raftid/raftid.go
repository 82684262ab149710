// Package raftid maps member names to the uint64 numbers go.etcd.io/raft
// uses, the same way on every member and every release. It is internal so
// that raftlease and its transport share one definition; users call
// raftlease.RaftID.
package raftid

import (
	"crypto/sha256"
	"encoding/binary"
)

// Of returns the Raft member number of the member named id: the first 8
// bytes, big endian, of SHA-256("hakit/raftlease/member\x00" + id), with 0
// (Raft's "nobody") mapped to 1.
func Of(id string) uint64 {
	sum := sha256.Sum256([]byte("hakit/raftlease/member\x00" + id))
	n := binary.BigEndian.Uint64(sum[:8])
	if n == 0 {
		n = 1
	}
	return n
}
