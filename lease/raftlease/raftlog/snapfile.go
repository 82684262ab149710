package raftlog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"path/filepath"

	"go.etcd.io/raft/v3/raftpb"
	"google.golang.org/protobuf/encoding/protowire"
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

// Field numbers of raftpb.Snapshot.
const (
	snapFieldData     protowire.Number = 1
	snapFieldMetadata protowire.Number = 2
)

// unmarshalSnapshot decodes a snapshot body and insists on a usable
// metadata: a non-zero index and term. The data aliases body, so that a
// snapshot read from its file is held once (proto.Unmarshal would copy
// it). Fields other than data and metadata are skipped.
func unmarshalSnapshot(body []byte) (*raftpb.Snapshot, error) {
	s := &raftpb.Snapshot{Metadata: &raftpb.SnapshotMetadata{}}
	for b := body; len(b) > 0; {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return nil, fmt.Errorf("snapshot body: %w", protowire.ParseError(n))
		}
		b = b[n:]
		switch {
		case num == snapFieldData && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return nil, fmt.Errorf("snapshot body: data: %w", protowire.ParseError(m))
			}
			s.Data, b = v[:len(v):len(v)], b[m:]
		case num == snapFieldMetadata && typ == protowire.BytesType:
			v, m := protowire.ConsumeBytes(b)
			if m < 0 {
				return nil, fmt.Errorf("snapshot body: metadata: %w", protowire.ParseError(m))
			}
			if err := (proto.UnmarshalOptions{Merge: true}).Unmarshal(v, s.Metadata); err != nil {
				return nil, fmt.Errorf("snapshot body: metadata: %w", err)
			}
			b = b[m:]
		default:
			m := protowire.ConsumeFieldValue(num, typ, b)
			if m < 0 {
				return nil, fmt.Errorf("snapshot body: field %d: %w", num, protowire.ParseError(m))
			}
			b = b[m:]
		}
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
	data := snap.GetData()
	return writeSnapshotStream(dir, snap.GetMetadata(), len(data), func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// writeSnapshotStream writes a snapshot file whose data, size bytes, the
// write function streams, without ever holding the file's bytes: the
// body is the protobuf encoding of raftpb.Snapshot written field by
// field (data, then metadata, as a deterministic marshal orders them),
// and the header's checksum is filled in once the body is written.
func writeSnapshotStream(dir string, md *raftpb.SnapshotMetadata, size int, write func(io.Writer) error) (tmp, final string, err error) {
	mdb, err := marshalOpts.Marshal(md)
	if err != nil {
		return "", "", fmt.Errorf("raftlog: marshal snapshot metadata: %w", err)
	}
	name := snapshotName(md.GetIndex(), md.GetTerm())
	final = filepath.Join(dir, name)
	// A unique temporary name: CreateSnapshot writes it without the lock.
	f, err := os.CreateTemp(dir, name+".*.tmp")
	if err != nil {
		return "", "", fmt.Errorf("raftlog: create snapshot file: %w", err)
	}
	tmp = f.Name()
	if err := fillSnapshotFile(f, mdb, size, write); err != nil {
		f.Close()
		os.Remove(tmp)
		return "", "", fmt.Errorf("raftlog: write %s: %w", tmp, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		os.Remove(tmp)
		return "", "", fmt.Errorf("raftlog: sync %s: %w", tmp, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return "", "", fmt.Errorf("raftlog: close %s: %w", tmp, err)
	}
	return tmp, final, nil
}

// fillSnapshotFile writes header and body to f (see encodeSnapshotFile).
func fillSnapshotFile(f *os.File, mdb []byte, size int, write func(io.Writer) error) error {
	var head []byte
	head = protowire.AppendTag(head, snapFieldData, protowire.BytesType)
	head = protowire.AppendVarint(head, uint64(size))
	var tail []byte
	tail = protowire.AppendTag(tail, snapFieldMetadata, protowire.BytesType)
	tail = protowire.AppendVarint(tail, uint64(len(mdb)))
	tail = append(tail, mdb...)
	bodyLen := len(head) + size + len(tail)

	hdr := make([]byte, snapHeaderSize)
	copy(hdr, snapMagic)
	binary.LittleEndian.PutUint32(hdr[8:12], snapVersion)
	binary.LittleEndian.PutUint64(hdr[12:20], uint64(bodyLen))
	if _, err := f.Write(hdr); err != nil {
		return err
	}
	sum := crc32.New(castagnoli)
	sum.Write(hdr[8:20])
	bw := bufio.NewWriterSize(io.MultiWriter(f, sum), 64<<10)
	bw.Write(head)
	cw := &countingWriter{w: bw}
	if err := write(cw); err != nil {
		return err
	}
	if cw.n != int64(size) {
		return fmt.Errorf("snapshot data of %d bytes, %d announced", cw.n, size)
	}
	bw.Write(tail)
	if err := bw.Flush(); err != nil {
		return err
	}
	binary.LittleEndian.PutUint32(hdr[20:24], sum.Sum32())
	_, err := f.WriteAt(hdr[20:24], 20)
	return err
}

// countingWriter counts what passes through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
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
