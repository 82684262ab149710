package pgcdc

import (
	"bytes"
	"encoding/binary"
	"errors"
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/hakit/hakit/replicate"
)

// pgoutput messages for the seed corpus, built as the server sends them.
func msgBegin(final uint64, xid uint32) []byte {
	b := []byte{'B'}
	b = binary.BigEndian.AppendUint64(b, final)
	b = binary.BigEndian.AppendUint64(b, 1000)
	return binary.BigEndian.AppendUint32(b, xid)
}

func msgCommit(commit, end uint64) []byte {
	b := []byte{'C', 0}
	b = binary.BigEndian.AppendUint64(b, commit)
	b = binary.BigEndian.AppendUint64(b, end)
	return binary.BigEndian.AppendUint64(b, 2000)
}

func msgRelation(id uint32, schema, table string, cols ...Column) []byte {
	b := []byte{'R'}
	b = binary.BigEndian.AppendUint32(b, id)
	b = append(append(b, schema...), 0)
	b = append(append(b, table...), 0)
	b = append(b, 'd')
	b = binary.BigEndian.AppendUint16(b, uint16(len(cols)))
	for _, c := range cols {
		var f byte
		if c.Key {
			f = 1
		}
		b = append(b, f)
		b = append(append(b, c.Name...), 0)
		b = binary.BigEndian.AppendUint32(b, c.Type)
		b = binary.BigEndian.AppendUint32(b, uint32(c.TypeMod))
	}
	return b
}

func wireTuple(vals ...*string) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(len(vals)))
	for _, v := range vals {
		if v == nil {
			b = append(b, 'n')
			continue
		}
		b = append(b, 't')
		b = binary.BigEndian.AppendUint32(b, uint32(len(*v)))
		b = append(b, *v...)
	}
	return b
}

func sp(s string) *string { return &s }

// seedStream is a transaction of every message kind.
func seedStream() [][]byte {
	cols := []Column{{Name: "id", Type: 23, TypeMod: -1, Key: true}, {Name: "v", Type: 25, TypeMod: -1}}
	ins := append([]byte{'I', 0, 0, 0, 1, 'N'}, wireTuple(sp("1"), sp("one"))...)
	upd := append(append([]byte{'U', 0, 0, 0, 1, 'K'}, wireTuple(sp("1"), nil)...), append([]byte{'N'}, wireTuple(sp("2"), sp("two"))...)...)
	del := append([]byte{'D', 0, 0, 0, 1, 'K'}, wireTuple(sp("2"), nil)...)
	trunc := []byte{'T', 0, 0, 0, 1, 3, 0, 0, 0, 1}
	typ := append([]byte{'Y', 0, 0, 0x40, 0}, "public\x00mood\x00"...)
	return [][]byte{msgBegin(0x100, 7), msgRelation(1, "public", "a", cols...), typ, ins, upd, del, trunc, msgCommit(0x100, 0x180)}
}

// FuzzDecoder feeds a message stream, split into messages by a length
// prefix, to the pgoutput decoder: it must fail cleanly or produce
// records that decode, never panic.
func FuzzDecoder(f *testing.F) {
	var all []byte
	for _, m := range seedStream() {
		all = binary.BigEndian.AppendUint16(all, uint16(len(m)))
		all = append(all, m...)
	}
	f.Add(all)
	f.Add(all[:len(all)/2])
	f.Add([]byte{0, 1, 'S'})
	f.Fuzz(func(t *testing.T, in []byte) {
		d := newDecoder(1 << 20)
		for len(in) >= 2 {
			n := int(binary.BigEndian.Uint16(in))
			in = in[2:]
			if n > len(in) {
				n = len(in)
			}
			tx, err := d.decode(in[:n])
			in = in[n:]
			if err != nil {
				return
			}
			if tx == nil {
				continue
			}
			for _, r := range tx.recs {
				if _, err := DecodeChange(r.Data); err != nil {
					t.Fatalf("record the decoder built does not decode: %v", err)
				}
				if _, err := DecodePos(r.Pos); err != nil {
					t.Fatal(err)
				}
			}
		}
	})
}

// FuzzDecodeChange: any bytes decode or fail with ErrCorruptChange; what
// decodes encodes back to the same bytes.
func FuzzDecodeChange(f *testing.F) {
	d := newDecoder(1 << 20)
	var tx *txn
	for _, m := range seedStream() {
		var err error
		if tx, err = d.decode(m); err != nil {
			f.Fatal(err)
		}
	}
	for _, r := range tx.recs {
		f.Add(r.Data)
	}
	f.Add(progressRecord(0x200, time.Unix(1, 0), nil).Data)
	f.Fuzz(func(t *testing.T, in []byte) {
		c, err := DecodeChange(in)
		if err != nil {
			return
		}
		if out := EncodeChange(c); !bytes.Equal(out, in) {
			t.Fatalf("re-encoded %x, decoded from %x", out, in)
		}
	})
}

// FuzzDecodePos: any bytes decode or fail; what decodes encodes back.
func FuzzDecodePos(f *testing.F) {
	f.Add([]byte(Pos{LSN: 0x1234, Seq: 3, Last: true}.Encode()))
	f.Add([]byte(Pos{LSN: 9, Seq: 1, Load: []byte{1, 2, 3}}.Encode()))
	f.Add([]byte{1, 2})
	f.Fuzz(func(t *testing.T, in []byte) {
		p, err := DecodePos(in)
		if err != nil || len(in) == 0 {
			return
		}
		if out := p.Encode(); !bytes.Equal(out, in) {
			t.Fatalf("re-encoded %x, decoded from %x", out, in)
		}
		if Compare(replicate.Position(in), p.Encode()) != 0 {
			t.Fatal("compare")
		}
	})
}

// A peer that keeps announcing large relations is stopped at
// maxAnnouncedBytes; announcing one again replaces it and costs nothing
// more.
func TestDecoderBoundsAnnouncedRelations(t *testing.T) {
	d := newDecoder(1 << 20)
	long := string(bytes.Repeat([]byte{'t'}, 1<<20))
	col := Column{Name: "id", Type: 23, TypeMod: -1, Key: true}
	for range 20 { // the same relation, announced again and again
		if _, err := d.decode(msgRelation(1, "public", long, col)); err != nil {
			t.Fatalf("announcing relation 1 again: %v", err)
		}
	}
	var err error
	for id := uint32(2); err == nil && id < 200; id++ {
		_, err = d.decode(msgRelation(id, "public", long, col))
	}
	if !errors.Is(err, ErrProtocol) || !strings.Contains(err.Error(), "announced take more than") {
		t.Fatalf("200 relations of 1 MiB names: %v, want a protocol error past %d bytes", err, maxAnnouncedBytes)
	}
	if d.announced > maxAnnouncedBytes {
		t.Errorf("decoder holds %d bytes of descriptions, bound %d", d.announced, maxAnnouncedBytes)
	}
}

// FuzzDecodeLoadState: the initial load's state comes back from the
// checkpoint store and the target: any bytes decode or fail with
// ErrPosition, and what decodes survives encoding again.
func FuzzDecodeLoadState(f *testing.F) {
	f.Add(loadState{copying: true, plan: 42, table: 1, filters: map[string]LSN{}}.encode())
	f.Add(loadState{filters: map[string]LSN{"public.a": 0x100, "public.b": 0x200}}.encode())
	f.Add([]byte{1, 'S', 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		st, err := decodeLoadState(in)
		if err != nil {
			if !errors.Is(err, ErrPosition) {
				t.Fatalf("error %v does not match ErrPosition", err)
			}
			return
		}
		again, err := decodeLoadState(st.encode())
		if err != nil {
			t.Fatalf("re-encoded state does not decode: %v", err)
		}
		if again.copying != st.copying || again.plan != st.plan || again.table != st.table || again.complete != st.complete || !maps.Equal(again.filters, st.filters) {
			t.Fatalf("decoded %+v, re-decoded %+v", st, again)
		}
	})
}
