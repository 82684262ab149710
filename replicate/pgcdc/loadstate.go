package pgcdc

import (
	"encoding/binary"
	"fmt"
	"hash/fnv"
	"sort"
	"strings"
)

// loadState is the initial load's state, carried in positions from the
// start of the load until streaming has passed every snapshot a table was
// copied under. See the package doc.
type loadState struct {
	copying  bool   // still copying tables (else streaming with filters)
	plan     uint64 // hash of the tables to copy (copying only)
	table    uint32 // index in the plan of the table of the position (copying only)
	complete bool   // that table is copied whole (copying only)
	// filters: tables copied under a snapshot later than the slot's
	// start, and that snapshot's LSN: their changes in transactions that
	// committed before it are in the copy already, and are skipped.
	filters map[string]LSN
}

// Layout, format 1: format[1] phase[1] ('C' copying, 'S' streaming)
// plan[8] table[4] complete[1] nfilters[2] then per filter lsn[8]
// nameLen[2] name, sorted by name.
const loadStateFormat = 1

func (s loadState) encode() []byte {
	b := []byte{loadStateFormat, 'S'}
	if s.copying {
		b[1] = 'C'
	}
	b = binary.BigEndian.AppendUint64(b, s.plan)
	b = binary.BigEndian.AppendUint32(b, s.table)
	if s.complete {
		b = append(b, 1)
	} else {
		b = append(b, 0)
	}
	names := make([]string, 0, len(s.filters))
	for n := range s.filters {
		names = append(names, n)
	}
	sort.Strings(names)
	b = binary.BigEndian.AppendUint16(b, uint16(len(names)))
	for _, n := range names {
		b = binary.BigEndian.AppendUint64(b, uint64(s.filters[n]))
		b = appendStr16(b, n)
	}
	return b
}

func decodeLoadState(b []byte) (loadState, error) {
	r := reader{b: b}
	bad := func(err error) (loadState, error) {
		return loadState{}, fmt.Errorf("%w: initial load state: %v", ErrPosition, err)
	}
	if len(b) < 17 || b[0] != loadStateFormat || (b[1] != 'C' && b[1] != 'S') || b[14] > 1 {
		return bad(fmt.Errorf("%d bytes, not format %d", len(b), loadStateFormat))
	}
	s := loadState{copying: b[1] == 'C', plan: binary.BigEndian.Uint64(b[2:]), table: binary.BigEndian.Uint32(b[10:]), complete: b[14] == 1, filters: map[string]LSN{}}
	n := binary.BigEndian.Uint16(b[15:])
	r.off = 17
	for range n {
		if err := r.need(8); err != nil {
			return bad(err)
		}
		lsn := LSN(binary.BigEndian.Uint64(b[r.off:]))
		r.off += 8
		name, err := r.str16()
		if err != nil {
			return bad(err)
		}
		s.filters[name] = lsn
	}
	if err := r.end(); err != nil {
		return bad(err)
	}
	return s, nil
}

// maxFilter is the latest snapshot a table was copied under.
func (s loadState) maxFilter() LSN {
	var m LSN
	for _, l := range s.filters {
		m = max(m, l)
	}
	return m
}

// planHash identifies a list of tables.
func planHash(tables []string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(strings.Join(tables, "\n")))
	return h.Sum64()
}
