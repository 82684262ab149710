package raftlog

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/proto"
)

// A snapshot file is
//
//	magic "HKRLSNP\0" | version u32 LE | body length u64 LE | CRC-32C u32 LE | body
//
// where the CRC covers version, length and body, and body is the
// deterministic protobuf encoding of the raftpb.Snapshot (metadata and
// data). The file name carries index and term; they must match the body.
const (
	snapMagic      = "HKRLSNP\x00"
	snapVersion    = 1
	snapHeaderSize = 8 + 4 + 8 + 4
)

var (
	errSnapShort   = errors.New("snapshot file shorter than its header")
	errSnapMagic   = errors.New("snapshot file has a bad magic number")
	errSnapVersion = errors.New("snapshot file has an unsupported version")
	errSnapLength  = errors.New("snapshot body length does not match file size")
	errSnapCRC     = errors.New("snapshot checksum mismatch")
)

func encodeSnapshotFile(body []byte) []byte {
	b := make([]byte, snapHeaderSize, snapHeaderSize+len(body))
	copy(b, snapMagic)
	binary.LittleEndian.PutUint32(b[8:12], snapVersion)
	binary.LittleEndian.PutUint64(b[12:20], uint64(len(body)))
	crc := crc32.Update(0, castagnoli, b[8:20])
	crc = crc32.Update(crc, castagnoli, body)
	binary.LittleEndian.PutUint32(b[20:24], crc)
	return append(b, body...)
}

// decodeSnapshotFile checks the framing of a whole snapshot file and
// returns its body, aliasing b.
func decodeSnapshotFile(b []byte) ([]byte, error) {
	if len(b) < snapHeaderSize {
		return nil, errSnapShort
	}
	if string(b[:8]) != snapMagic {
		return nil, errSnapMagic
	}
	if v := binary.LittleEndian.Uint32(b[8:12]); v != snapVersion {
		return nil, fmt.Errorf("%w: %d", errSnapVersion, v)
	}
	if n := binary.LittleEndian.Uint64(b[12:20]); n != uint64(len(b)-snapHeaderSize) {
		return nil, fmt.Errorf("%w: header says %d bytes, file has %d", errSnapLength, n, len(b)-snapHeaderSize)
	}
	crc := crc32.Update(0, castagnoli, b[8:20])
	crc = crc32.Update(crc, castagnoli, b[snapHeaderSize:])
	if crc != binary.LittleEndian.Uint32(b[20:24]) {
		return nil, errSnapCRC
	}
	return b[snapHeaderSize:], nil
}

// unmarshalSnapshot decodes a snapshot body and insists on a usable
// metadata: a non-zero index and term.
func unmarshalSnapshot(body []byte) (*raftpb.Snapshot, error) {
	s := new(raftpb.Snapshot)
	if err := proto.Unmarshal(body, s); err != nil {
		return nil, fmt.Errorf("snapshot body: %w", err)
	}
	if s.GetMetadata().GetIndex() == 0 || s.GetMetadata().GetTerm() == 0 {
		return nil, errors.New("snapshot body has no index or term")
	}
	return raftpb.EnsureSnapshot(s), nil
}

var marshalOpts = proto.MarshalOptions{Deterministic: true}

func snapshotName(index, term uint64) string {
	return fmt.Sprintf("%016x-%016x.snap", index, term)
}

func segmentName(seq, prevIndex uint64) string {
	return fmt.Sprintf("%016x-%016x.wal", seq, prevIndex)
}

// parseName parses the "%016x-%016x.<ext>" names used for both kinds of
// file. Anything else is not ours.
func parseName(name, ext string) (a, b uint64, ok bool) {
	if len(name) != 16+1+16+len(ext) || name[16] != '-' || name[33:] != ext {
		return 0, 0, false
	}
	if _, err := fmt.Sscanf(name[:33], "%016x-%016x", &a, &b); err != nil {
		return 0, 0, false
	}
	// Reject names that parse but are not in canonical form (e.g. "+").
	if fmt.Sprintf("%016x-%016x", a, b) != name[:33] {
		return 0, 0, false
	}
	return a, b, true
}

// writeSnapshotTemp writes snap to a temporary file in dir and fsyncs it.
// publishSnapshot makes it visible; until then a crash leaves only a
// ".tmp" file, which Open removes.
func writeSnapshotTemp(dir string, snap *raftpb.Snapshot) (tmp, final string, err error) {
	body, err := marshalOpts.Marshal(snap)
	if err != nil {
		return "", "", fmt.Errorf("raftlog: marshal snapshot: %w", err)
	}
	name := snapshotName(snap.GetMetadata().GetIndex(), snap.GetMetadata().GetTerm())
	final = filepath.Join(dir, name)
	// A unique temporary name: CreateSnapshot writes it without the lock.
	f, err := os.CreateTemp(dir, name+".*.tmp")
	if err != nil {
		return "", "", fmt.Errorf("raftlog: create snapshot file: %w", err)
	}
	tmp = f.Name()
	if err := writeSync(f, encodeSnapshotFile(body)); err != nil {
		os.Remove(tmp)
		return "", "", err
	}
	return tmp, final, nil
}

// publishSnapshot renames the synced temporary file into place and syncs
// the directory so that the name survives a crash.
func publishSnapshot(dir, tmp, final string) error {
	if err := os.Rename(tmp, final); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("raftlog: publish snapshot: %w", err)
	}
	return syncDir(dir)
}

// readSnapshotFile loads and verifies the snapshot file at path, whose name
// says it holds (index, term).
func readSnapshotFile(path string, index, term uint64) (*raftpb.Snapshot, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("raftlog: read snapshot: %w", err)
	}
	body, err := decodeSnapshotFile(b)
	if err != nil {
		return nil, corruptf(path, 0, "%v", err)
	}
	s, err := unmarshalSnapshot(body)
	if err != nil {
		return nil, corruptf(path, snapHeaderSize, "%v", err)
	}
	if m := s.GetMetadata(); m.GetIndex() != index || m.GetTerm() != term {
		return nil, corruptf(path, snapHeaderSize, "snapshot body is index %d term %d, name says index %d term %d",
			m.GetIndex(), m.GetTerm(), index, term)
	}
	return s, nil
}

// writeSync writes data to f, fsyncs and closes it.
func writeSync(f *os.File, data []byte) error {
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("raftlog: write %s: %w", f.Name(), err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("raftlog: sync %s: %w", f.Name(), err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("raftlog: close %s: %w", f.Name(), err)
	}
	return nil
}

// syncDir makes renames, creations and removals in dir durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("raftlog: open directory %s: %w", dir, err)
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("raftlog: sync directory %s: %w", dir, err)
	}
	return nil
}
