package room

import (
	"bytes"
	"cmp"
	"context"
	"crypto/hmac"
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-msgio/pbio"
	"google.golang.org/protobuf/proto"

	"github.com/madang-p2p/madang/protocols/room/pb"
	"github.com/madang-p2p/madang/store"
)

// SyncProtocolID is history repair between room peers (see pb/sync.proto): a summary of what the
// requester holds, the IDs the peer holds where it differs, then the items the requester lacks, by ID, on
// one stream. (A joining node still takes its first page from /madang/room-sync/1.0.0, package roomsync.)
const SyncProtocolID = "/madang/room-sync/2.0.0"

// Repair limits.
const (
	MaxSyncRequestBytes  = 64 << 10 // a summary of maxBuckets buckets, or maxWant IDs
	MaxSyncResponseBytes = 2 << 20  // a page of items, or maxHave + maxHaveMod IDs and a card
	syncPageBytes        = 1 << 20  // items per answer, in bytes
	syncOpenTimeout      = 10 * time.Second
	syncSessionTimeout   = 60 * time.Second // one whole session, both sides
	maxServeRequests     = 64               // requests served on one stream
	maxServeSessions     = 16               // streams served at once by a node
	maxRepairRounds      = 8                // summaries per session
	maxRepairFetches     = 32               // by-ID requests per session (at most 32 MiB of items)
	refusedCap           = 4096             // IDs remembered as refused, per room
	hostileFor           = 10 * time.Minute
	codeLinkRequired     = "link_required"
)

// errHostile marks answers no honest peer gives: forged or malformed items, oversized answers, more
// items or IDs than asked for. The session ends and the peer is left out of repairs for hostileFor.
var errHostile = errors.New("room: sync peer sent an invalid answer")

// repairResult counts what one session brought.
type repairResult struct {
	received int // items received (messages and moderation entries)
	stored   int // messages stored
	deferred int // messages left to the live path (ahead of what it delivered from their author)
}

// syncStream is the requester's side of a repair stream.
type syncStream struct {
	w  pbio.WriteCloser
	rd pbio.ReadCloser
}

func (c *syncStream) roundTrip(req *pb.SyncRequest) (*pb.SyncResponse, error) {
	if err := c.w.WriteMsg(req); err != nil {
		return nil, fmt.Errorf("write: %w", err)
	}
	var resp pb.SyncResponse
	if err := c.rd.ReadMsg(&resp); err != nil {
		if errors.Is(err, io.ErrShortBuffer) || errors.Is(err, proto.Error) {
			return nil, fmt.Errorf("%w: %w", errHostile, err)
		}
		return nil, fmt.Errorf("read: %w", err)
	}
	switch resp.Error {
	case "":
		return &resp, nil
	case codeLinkRequired:
		return nil, ErrLinkRequired
	}
	return nil, fmt.Errorf("refused (%.64q)", resp.Error)
}

// repairWith runs one repair session with p and stores what this node lacks and p holds: moderation
// entries first (bans and hides apply to the messages), then messages. Each item is verified once, and
// only items asked for are read. It compares messages stamped before to (math.MaxInt64: all).
func (r *roomRT) repairWith(ctx context.Context, p peer.ID, to int64) (res repairResult, err error) {
	r.s.repairs.Add(1)
	defer func() {
		r.s.repairItems.Add(int64(res.received))
		r.s.repairStored.Add(int64(res.stored))
		if errors.Is(err, errHostile) {
			r.s.markHostile(p)
		}
	}()
	ctx, cancel := context.WithTimeout(ctx, syncSessionTimeout)
	defer cancel()
	octx, ocancel := context.WithTimeout(ctx, syncOpenTimeout)
	st, err := r.s.d.Host.NewStream(octx, p, SyncProtocolID)
	ocancel()
	if err != nil {
		return res, fmt.Errorf("room repair: open: %w", err)
	}
	if dl, ok := ctx.Deadline(); ok {
		_ = st.SetDeadline(dl)
	}
	defer func() {
		if err != nil {
			_ = st.Reset()
			return
		}
		_ = st.Close()
	}()
	c := &syncStream{w: pbio.NewDelimitedWriter(st), rd: pbio.NewDelimitedReader(st, MaxSyncResponseBytes)}
	from, err := r.repairFrom(ctx)
	if err != nil {
		return res, err
	}
	to = max(to, from+1)
	fetches := 0
	for round := range maxRepairRounds {
		hs, err := r.held(ctx, from, to)
		if err != nil {
			return res, err
		}
		sum := summarise(hs, from, to)
		r.mu.Lock()
		sum.ModCount, sum.ModFingerprint = modSummary(&r.log)
		sum.CardMs = cardTime(r.rec.Card)
		r.mu.Unlock()
		req := &pb.SyncRequest{Summary: sum}
		if round == 0 {
			req.Room = r.id[:]
			if r.secret != nil {
				req.Proof = repairProof(r.secret, r.id, r.s.d.Host.ID().String(), p.String())
			}
		}
		resp, err := c.roundTrip(req)
		if err != nil {
			return res, fmt.Errorf("room repair: summary: %w", err)
		}
		if err := checkSummaryAnswer(resp); err != nil {
			return res, err
		}
		if len(resp.Card) > 0 {
			r.s.takeCard(r, resp.Card)
		}
		wantMod, err := r.lacking(resp.HaveMod, true)
		if err != nil {
			return res, err
		}
		if err := r.fetch(c, wantMod, true, &fetches, &res); err != nil {
			return res, err
		}
		want, err := r.lacking(resp.Have, false)
		if err != nil {
			return res, err
		}
		if err := r.fetch(c, want, false, &fetches, &res); err != nil {
			return res, err
		}
		if resp.MoreFromMs <= from || resp.MoreFromMs >= to || fetches >= maxRepairFetches {
			break
		}
		from = resp.MoreFromMs
	}
	return res, nil
}

// repairFrom is where the history a session compares starts: the join floor, or the oldest stored
// message once the room holds its history limit (older ones would be pruned again).
func (r *roomRT) repairFrom(ctx context.Context) (from int64, err error) {
	r.mu.Lock()
	from = max(r.rec.FloorMs, 0)
	full := r.count >= r.s.c.HistoryLimit
	r.mu.Unlock()
	if full {
		prefix := "m/" + r.key + "/"
		for e, err := range r.s.d.Store.Scan(ctx, store.Range{Prefix: prefix, Limit: 1}) {
			if err != nil {
				return 0, err
			}
			ts, _, _ := strings.Cut(strings.TrimPrefix(e.Key, prefix), "/")
			if t, err := strconv.ParseInt(ts, 10, 64); err == nil {
				from = max(from, t)
			}
		}
	}
	return from, nil
}

// lacking picks from a peer's list the IDs this node neither holds nor refused, without repeats.
func (r *roomRT) lacking(ids [][]byte, mods bool) ([]MsgID, error) {
	var out []MsgID
	seen := make(map[MsgID]bool, len(ids))
	for _, raw := range ids {
		id, ok := msgIDFrom(raw)
		if !ok {
			return nil, fmt.Errorf("room repair: id of %d bytes: %w", len(raw), errHostile)
		}
		if seen[id] || r.isRefused(id) {
			continue
		}
		seen[id] = true
		if mods {
			if r.hasMod(id) {
				continue
			}
		} else if r.seenRecently(id) || r.has(id) {
			continue
		}
		out = append(out, id)
	}
	return out, nil
}

// fetch asks for ids, maxWant at a time, and takes what comes back; budget counts requests per session.
func (r *roomRT) fetch(c *syncStream, ids []MsgID, mods bool, budget *int, res *repairResult) error {
	for len(ids) > 0 && *budget < maxRepairFetches {
		*budget++
		chunk := ids[:min(len(ids), maxWant)]
		wanted := make(map[MsgID]bool, len(chunk))
		raw := make([][]byte, len(chunk))
		for i, id := range chunk {
			wanted[id] = true
			raw[i] = id[:]
		}
		req := &pb.SyncRequest{Want: raw}
		if mods {
			req = &pb.SyncRequest{WantMod: raw}
		}
		resp, err := c.roundTrip(req)
		if err != nil {
			return fmt.Errorf("room repair: fetch: %w", err)
		}
		items, done, err := checkFetchAnswer(resp, len(chunk), mods)
		if err != nil {
			return err
		}
		res.received += len(items)
		got, err := pickWanted(items, wanted, mods, r.id)
		if err != nil {
			return err
		}
		if mods {
			err = r.takeSyncedMods(got)
		} else {
			err = r.takeSynced(got, res)
		}
		if err != nil {
			return err
		}
		ids = ids[done:]
	}
	return nil
}

// checkSummaryAnswer checks the shape of an answer to a summary.
func checkSummaryAnswer(resp *pb.SyncResponse) error {
	if len(resp.Have) > maxHave || len(resp.HaveMod) > maxHaveMod || len(resp.Messages) > 0 || len(resp.Moderation) > 0 ||
		resp.Done != 0 || resp.MoreFromMs < 0 || len(resp.Card) > MaxCardBytes {
		return fmt.Errorf("room repair: summary answer: %w", errHostile)
	}
	return nil
}

// checkFetchAnswer checks the shape of an answer to a request for asked IDs and returns its items and
// how many of the IDs it handled (at least one: an answer always makes progress).
func checkFetchAnswer(resp *pb.SyncResponse, asked int, mods bool) ([][]byte, int, error) {
	items, other := resp.Messages, resp.Moderation
	if mods {
		items, other = other, items
	}
	done := int(resp.Done)
	if done == 0 || done > asked || len(items) > done || len(other) > 0 || len(resp.Have) > 0 ||
		len(resp.HaveMod) > 0 || len(resp.Card) > 0 || resp.MoreFromMs != 0 {
		return nil, 0, fmt.Errorf("room repair: fetch answer: %w", errHostile)
	}
	return items, done, nil
}

// pickWanted parses fetched items and keeps those asked for (each once), unverified. Items not asked for
// are dropped unread; a malformed item, or one of another room or kind, is an invalid answer.
func pickWanted(items [][]byte, wanted map[MsgID]bool, mods bool, room ID) ([]*decoded, error) {
	var out []*decoded
	for _, raw := range items {
		d, err := parseItem(raw)
		if err != nil || (d.mod != nil) != mods {
			return nil, fmt.Errorf("room repair: item: %w", errHostile)
		}
		id, rm := d.ID()
		if !wanted[id] {
			continue
		}
		delete(wanted, id)
		if rm != room {
			return nil, fmt.Errorf("room repair: item of another room: %w", errHostile)
		}
		out = append(out, d)
	}
	return out, nil
}

// takeSynced verifies and stores fetched messages. A forged one ends the session (errHostile); messages
// of personas banned at their time, without the link room's join proof or from the far future are refused
// (and not asked for again).
func (r *roomRT) takeSynced(got []*decoded, res *repairResult) error {
	st := r.state.Load()
	link := st.Genesis.Body.JoinPolicy == pb.JoinPolicy_JOIN_LINK
	// In time order, which is each author's seq order: a stored message lets its author's next one follow
	// (see aheadOfLive).
	slices.SortFunc(got, func(a, b *decoded) int { return cmp.Compare(a.msg.Body.TimeMs, b.msg.Body.TimeMs) })
	for _, d := range got {
		m := d.msg
		if r.has(m.ID) {
			continue // stored meanwhile (live): no second verification
		}
		if !d.verify() {
			return fmt.Errorf("room repair: message signature: %w", errHostile)
		}
		if (link && !hmac.Equal(m.Body.JoinProof, joinProof(r.secret, r.id, m.Body.Persona))) ||
			m.Time().After(r.s.now().Add(MaxFutureSkew)) {
			r.refuse(m.ID)
			continue
		}
		// A message ahead of what the live stream is delivering from its author is left to the live path
		// (which restores the author's order); the next session fetches it if it was lost.
		if r.aheadOfLive(m) {
			res.deferred++
			continue
		}
		ok, err := r.ingestMessage(m, false)
		if err != nil {
			return err
		}
		if ok {
			res.stored++
		} else if !r.has(m.ID) {
			r.refuse(m.ID) // banned at its time
		}
	}
	return nil
}

// takeSyncedMods verifies and adds fetched moderation entries, in log order, keeping only those their
// signer may make (as the topic validator does).
func (r *roomRT) takeSyncedMods(got []*decoded) error {
	slices.SortFunc(got, func(a, b *decoded) int { return compareActions(a.mod, b.mod) })
	for _, d := range got {
		if r.hasMod(d.mod.ID) {
			continue
		}
		if !d.verify() {
			return fmt.Errorf("room repair: moderation signature: %w", errHostile)
		}
		if !modAllowed(r.state.Load(), d.mod.Body) {
			r.refuse(d.mod.ID)
			continue
		}
		if _, err := r.ingestMod(d.mod); err != nil {
			return err
		}
	}
	return nil
}

// handleSync serves repair sessions: at most maxServeSessions at once, maxServeRequests requests each,
// within syncSessionTimeout.
func (s *Service) handleSync(st network.Stream) {
	select {
	case s.serving <- struct{}{}:
	default:
		_ = st.Reset() // busy: the requester tries another peer or later
		return
	}
	defer func() { <-s.serving }()
	_ = st.SetDeadline(time.Now().Add(syncSessionTimeout))
	ctx, cancel := context.WithTimeout(s.runCtx, syncSessionTimeout)
	defer cancel()
	rd := pbio.NewDelimitedReader(st, MaxSyncRequestBytes)
	w := pbio.NewDelimitedWriter(st)
	remote := st.Conn().RemotePeer()
	var r *roomRT
	for range maxServeRequests {
		var req pb.SyncRequest
		if err := rd.ReadMsg(&req); err != nil {
			if errors.Is(err, io.EOF) {
				_ = st.Close()
			} else {
				_ = st.Reset()
			}
			return
		}
		if r == nil {
			var err error
			r, err = s.roomAsked(req.Room, req.Proof, func(secret []byte, id ID) []byte {
				return repairProof(secret, id, remote.String(), s.d.Host.ID().String())
			})
			if err != nil {
				if errors.Is(err, ErrLinkRequired) && w.WriteMsg(&pb.SyncResponse{Error: codeLinkRequired}) == nil {
					_ = st.Close()
					return
				}
				_ = st.Reset()
				return
			}
		} else if len(req.Room) > 0 && !bytes.Equal(req.Room, r.id[:]) {
			_ = st.Reset()
			return
		}
		resp, err := r.answer(ctx, remote, &req)
		if err != nil || w.WriteMsg(resp) != nil {
			_ = st.Reset()
			return
		}
	}
	_ = st.Close()
}

// answer serves one request: a summary, or IDs to send.
func (r *roomRT) answer(ctx context.Context, remote peer.ID, req *pb.SyncRequest) (*pb.SyncResponse, error) {
	switch {
	case req.Summary != nil && len(req.Want) == 0 && len(req.WantMod) == 0:
		return r.answerSummary(ctx, remote, req.Summary)
	case req.Summary == nil && len(req.Want) > 0 && len(req.WantMod) == 0:
		return r.serveWant(req.Want)
	case req.Summary == nil && len(req.Want) == 0 && len(req.WantMod) > 0:
		return r.serveWantMod(req.WantMod)
	}
	return nil, ErrBadRequest
}

func (r *roomRT) answerSummary(ctx context.Context, remote peer.ID, sum *pb.Summary) (*pb.SyncResponse, error) {
	if err := checkSummary(sum); err != nil {
		return nil, err
	}
	mine, err := r.held(ctx, sum.FromMs, sum.ToMs)
	if err != nil {
		return nil, err
	}
	have, more, theirs := compareSummary(sum, mine, maxHave)
	resp := &pb.SyncResponse{Have: have, MoreFromMs: more}
	r.mu.Lock()
	if n, fp := modSummary(&r.log); n != sum.ModCount || fp != sum.ModFingerprint {
		for _, a := range r.log.entries[max(len(r.log.entries)-maxHaveMod, 0):] {
			resp.HaveMod = append(resp.HaveMod, slices.Clone(a.ID[:]))
		}
		theirs = theirs || sum.ModCount > n
	}
	if cardTime(r.rec.Card) > sum.CardMs {
		resp.Card = r.rec.Card
	}
	r.mu.Unlock()
	if theirs {
		r.catchUpWith(remote) // the requester holds something we lack
	}
	return resp, nil
}

// serveWant sends the asked messages this node holds and hands on (not hidden, not our pending ones), in
// the order asked, up to syncPageBytes.
func (r *roomRT) serveWant(ids [][]byte) (*pb.SyncResponse, error) {
	if len(ids) > maxWant {
		return nil, ErrBadRequest
	}
	hidden := r.state.Load().Hidden
	pending := r.hasPending()
	resp := &pb.SyncResponse{Done: uint32(len(ids))}
	size := 0
	for i, raw := range ids {
		id, ok := msgIDFrom(raw)
		if !ok {
			return nil, ErrBadRequest
		}
		ts, err := r.s.d.Store.Get(r.idxKey(id))
		if err != nil || hidden[id] {
			continue
		}
		suffix := string(ts) + "/" + id.String()
		if pending && r.isPendingKey(suffix) {
			continue
		}
		v, err := r.s.d.Store.Get("m/" + r.key + "/" + suffix)
		if err != nil {
			continue
		}
		if size+len(v) > syncPageBytes && len(resp.Messages) > 0 {
			resp.Done = uint32(i)
			break
		}
		resp.Messages = append(resp.Messages, v)
		size += len(v)
	}
	return resp, nil
}

// serveWantMod sends the asked moderation entries, up to syncPageBytes.
func (r *roomRT) serveWantMod(ids [][]byte) (*pb.SyncResponse, error) {
	if len(ids) > maxWant {
		return nil, ErrBadRequest
	}
	resp := &pb.SyncResponse{Done: uint32(len(ids))}
	size := 0
	r.mu.Lock()
	defer r.mu.Unlock()
	for i, raw := range ids {
		id, ok := msgIDFrom(raw)
		if !ok {
			return nil, ErrBadRequest
		}
		a := r.log.Get(id)
		if a == nil {
			continue
		}
		if size+len(a.Raw) > syncPageBytes && len(resp.Moderation) > 0 {
			resp.Done = uint32(i)
			break
		}
		resp.Moderation = append(resp.Moderation, a.Raw)
		size += len(a.Raw)
	}
	return resp, nil
}

// cardTime is the time of a stored (verified) card, 0 if none.
func cardTime(raw []byte) int64 {
	if len(raw) == 0 {
		return 0
	}
	var b pb.CardBody
	if _, err := openSigned("card", raw, MaxCardBytes, &b); err != nil {
		return 0
	}
	return b.TimeMs
}

// refuse remembers a message or moderation ID this node will not store (invalid for it, or dropped by its
// rate limits), so that repair does not ask for it again.
func (r *roomRT) refuse(id MsgID) {
	r.refusedMu.Lock()
	defer r.refusedMu.Unlock()
	if r.refused == nil || len(r.refused) >= refusedCap {
		r.refused = map[MsgID]struct{}{}
	}
	r.refused[id] = struct{}{}
}

func (r *roomRT) isRefused(id MsgID) bool {
	r.refusedMu.Lock()
	defer r.refusedMu.Unlock()
	_, ok := r.refused[id]
	return ok
}

// markHostile leaves a peer out of repairs for hostileFor.
func (s *Service) markHostile(p peer.ID) {
	now := time.Now()
	s.hostileMu.Lock()
	defer s.hostileMu.Unlock()
	if len(s.hostile) >= 1024 {
		for q, until := range s.hostile {
			if now.After(until) {
				delete(s.hostile, q)
			}
		}
	}
	if len(s.hostile) < 4096 {
		s.hostile[p] = now.Add(hostileFor)
	}
	s.log.Info("Room sync peer sent an invalid answer", "peer", p)
}

func (s *Service) isHostile(p peer.ID) bool {
	s.hostileMu.Lock()
	defer s.hostileMu.Unlock()
	until, ok := s.hostile[p]
	return ok && time.Now().Before(until)
}
