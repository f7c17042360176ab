package feed

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/libp2p/go-libp2p/core/network"
	"github.com/libp2p/go-libp2p/core/peer"
	"github.com/libp2p/go-libp2p/core/peerstore"
	"github.com/libp2p/go-libp2p/core/protocol"
	"github.com/libp2p/go-msgio/pbio"

	"github.com/madang-p2p/madang/protocols/feed/pb"
	"github.com/madang-p2p/madang/store"
)

// NoticeProtocolID carries follow notices to the nodes that keep a channel (its owner, pinning relays) and
// lets the owner collect the notices relays received while it was offline.
const NoticeProtocolID protocol.ID = "/madang/feed-notice/1.0.0"

const (
	maxNoticeRequest  = 1 << 10
	maxNoticeResponse = 256 << 10
	noticePage        = 500
	noticeTargets     = 3 // nodes a follower hands its notice to
	noticeTimeout     = 10 * time.Second
	maxNoticeSkew     = 10 * time.Minute
)

func noticeKey(id ChannelID, customer []byte) string {
	return chanPrefix(id) + "n/" + hex.EncodeToString(customer)
}

func queueKey(id ChannelID) string { return "q/" + string(id) }

// queueNotice signs a follow (or unfollow) notice with the channel's customer key and queues it for
// delivery; a newer notice replaces a queued one.
func (s *Service) queueNotice(id ChannelID, following bool) error {
	if s.o.Secrets == nil {
		return nil
	}
	key, err := ParseID(string(id))
	if err != nil {
		return err
	}
	n, err := SignNotice(CustomerKey(s.o.Secrets, id), key, following, s.o.Now())
	if err != nil {
		return err
	}
	if err := s.db.ns.PutSync(queueKey(id), n.Raw); err != nil {
		return fmt.Errorf("queue notice: %w", err)
	}
	s.wg.Go(func() { s.deliverOne(s.ctx, id, n.Raw) })
	return nil
}

// deliverNotices retries every queued notice.
func (s *Service) deliverNotices(ctx context.Context) {
	for ent, err := range s.db.ns.Scan(ctx, store.Range{Prefix: "q/"}) {
		if err != nil {
			return
		}
		s.deliverOne(ctx, ChannelID(strings.TrimPrefix(ent.Key, "q/")), ent.Value)
	}
}

// deliverOne hands a notice to up to noticeTargets nodes that keep the channel (found among the peers on
// its topic and its DHT providers; only owners and pinning relays accept); once one accepted it, the queued
// copy is removed (unless a newer notice replaced it meanwhile).
func (s *Service) deliverOne(ctx context.Context, id ChannelID, raw []byte) {
	key, err := ParseID(string(id))
	if err != nil {
		_ = s.db.ns.Delete(queueKey(id))
		return
	}
	req := &pb.NoticeRequest{Req: &pb.NoticeRequest_Deliver{Deliver: mustSignedNotice(raw)}}
	accepted := 0
	tried := map[peer.ID]bool{s.o.Host.ID(): true}
	try := func(ctx context.Context, p peer.ID) {
		if accepted >= noticeTargets || tried[p] || p == "" {
			return
		}
		tried[p] = true
		if resp, err := s.noticeRPC(ctx, p, req); err == nil && resp.Ok {
			accepted++
		}
	}
	for _, p := range s.topicPeers(id) {
		try(ctx, p)
	}
	if accepted < noticeTargets {
		fctx, cancel := context.WithTimeout(ctx, findTimeout)
		for ai := range s.o.Routing.FindProvidersAsync(fctx, ProviderCID(key), maxSyncPeers) {
			if len(ai.Addrs) > 0 && !tried[ai.ID] {
				s.o.Host.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.TempAddrTTL)
			}
			try(fctx, ai.ID)
		}
		cancel()
	}
	if accepted == 0 {
		return
	}
	if cur, err := s.db.ns.Get(queueKey(id)); err == nil && bytes.Equal(cur, raw) {
		_ = s.db.ns.DeleteSync(queueKey(id))
	}
}

func mustSignedNotice(raw []byte) *pb.Signed {
	var sn pb.Signed
	_ = unmarshal(raw, &sn) // raw was verified when signed or stored
	return &sn
}

// NoticePending reports whether a follow or unfollow notice for the channel still awaits delivery.
func (s *Service) NoticePending(id ChannelID) bool {
	ok, _ := s.db.ns.Has(queueKey(id))
	return ok
}

func (s *Service) noticeRPC(ctx context.Context, p peer.ID, req *pb.NoticeRequest) (*pb.NoticeResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, noticeTimeout)
	defer cancel()
	st, err := s.o.Host.NewStream(network.WithAllowLimitedConn(ctx, "feed-notice"), p, NoticeProtocolID)
	if err != nil {
		return nil, fmt.Errorf("notice to %s: %w", p, err)
	}
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(noticeTimeout))
	if err := pbio.NewDelimitedWriter(st).WriteMsg(req); err != nil {
		_ = st.Reset()
		return nil, fmt.Errorf("notice to %s: %w", p, err)
	}
	_ = st.CloseWrite()
	var resp pb.NoticeResponse
	if err := pbio.NewDelimitedReader(st, maxNoticeResponse).ReadMsg(&resp); err != nil {
		_ = st.Reset()
		return nil, fmt.Errorf("notice from %s: %w", p, err)
	}
	return &resp, nil
}

// handleNotice serves /madang/feed-notice/1.0.0 on nodes that own or pin a channel.
func (s *Service) handleNotice(st network.Stream) {
	defer st.Close()
	_ = st.SetDeadline(time.Now().Add(noticeTimeout))
	var req pb.NoticeRequest
	if err := pbio.NewDelimitedReader(st, maxNoticeRequest).ReadMsg(&req); err != nil {
		if !errors.Is(err, io.EOF) {
			_ = st.Reset()
		}
		return
	}
	resp := s.answerNotice(&req)
	if err := pbio.NewDelimitedWriter(st).WriteMsg(resp); err != nil {
		_ = st.Reset()
	}
}

func (s *Service) answerNotice(req *pb.NoticeRequest) *pb.NoticeResponse {
	switch r := req.Req.(type) {
	case *pb.NoticeRequest_Deliver:
		raw, err := marshal(r.Deliver)
		if err != nil {
			return &pb.NoticeResponse{Error: "bad notice"}
		}
		n, err := VerifyNotice(raw)
		if err != nil {
			return &pb.NoticeResponse{Error: "bad notice"}
		}
		if n.Time.After(s.o.Now().Add(maxNoticeSkew)) {
			return &pb.NoticeResponse{Error: "notice from the future"}
		}
		ch, err := s.keeper(IDFromKey(n.Channel))
		if err != nil {
			return &pb.NoticeResponse{Error: "channel not kept here"}
		}
		if err := s.storeNotice(ch.log.id, n); err != nil {
			return &pb.NoticeResponse{Error: "not stored"}
		}
		return &pb.NoticeResponse{Ok: true}
	case *pb.NoticeRequest_List:
		if len(r.List.Channel) != 32 {
			return &pb.NoticeResponse{Error: "bad request"}
		}
		ch, err := s.keeper(IDFromKey(r.List.Channel))
		if err != nil {
			return &pb.NoticeResponse{Error: "channel not kept here"}
		}
		limit := int(min(max(r.List.Limit, 1), noticePage))
		p := chanPrefix(ch.log.id) + "n/"
		rg := store.Range{Prefix: p, Limit: limit + 1}
		if len(r.List.After) > 0 {
			rg.Start = p + hex.EncodeToString(r.List.After) + "\x00"
		}
		resp := &pb.NoticeResponse{Ok: true}
		for ent, err := range s.db.ns.Scan(s.ctx, rg) {
			if err != nil {
				return &pb.NoticeResponse{Error: "store"}
			}
			if len(resp.Notices) == limit {
				resp.More = true
				break
			}
			resp.Notices = append(resp.Notices, mustSignedNotice(ent.Value))
		}
		return resp
	default:
		return &pb.NoticeResponse{Error: "bad request"}
	}
}

// keeper returns a channel this node owns or pins.
func (s *Service) keeper(id ChannelID) (*channel, error) {
	ch, err := s.get(id)
	if err != nil {
		return nil, err
	}
	if st := ch.log.State(); !st.Owned && !st.Pinned {
		return nil, fmt.Errorf("%w: %s", ErrNotFound, id)
	}
	return ch, nil
}

// storeNotice keeps a customer's newest notice.
func (s *Service) storeNotice(id ChannelID, n *Notice) error {
	k := noticeKey(id, n.Customer)
	if old, err := s.db.ns.Get(k); err == nil {
		if o, err := VerifyNotice(old); err == nil && !n.Time.After(o.Time) {
			return nil
		}
	}
	return s.db.ns.PutSync(k, n.Raw)
}

// collectNotices fetches the follow notices that the channel's other keepers (pinning relays) received.
func (s *Service) collectNotices(ctx context.Context, ch *channel) {
	fctx, cancel := context.WithTimeout(ctx, findTimeout)
	defer cancel()
	for ai := range s.o.Routing.FindProvidersAsync(fctx, ProviderCID(ch.log.key), maxSyncPeers) {
		if ai.ID == s.o.Host.ID() || ai.ID == "" || fctx.Err() != nil {
			continue
		}
		if len(ai.Addrs) > 0 {
			s.o.Host.Peerstore().AddAddrs(ai.ID, ai.Addrs, peerstore.TempAddrTTL)
		}
		var after []byte
		for range 100 { // at most 50,000 notices from one keeper per round
			resp, err := s.noticeRPC(fctx, ai.ID, &pb.NoticeRequest{Req: &pb.NoticeRequest_List{List: &pb.ListNotices{
				Channel: ch.log.key, After: after, Limit: noticePage,
			}}})
			if err != nil || !resp.Ok {
				break
			}
			for _, sn := range resp.Notices {
				var body pb.FollowNotice
				if unmarshal(sn.Body, &body) == nil && bytes.Compare(body.Customer, after) > 0 {
					after = body.Customer
				}
				raw, err := marshal(sn)
				if err != nil {
					continue
				}
				n, err := VerifyNotice(raw)
				if err != nil || !n.Channel.Equal(ch.log.key) || n.Time.After(s.o.Now().Add(maxNoticeSkew)) {
					continue
				}
				_ = s.storeNotice(ch.log.id, n)
			}
			if !resp.More || len(resp.Notices) == 0 {
				break
			}
		}
	}
}

// Followers counts the customer keys whose newest notice says they follow the channel.
func (s *Service) Followers(ctx context.Context, id ChannelID) (int, error) {
	if _, err := s.keeper(id); err != nil {
		return 0, err
	}
	n := 0
	for ent, err := range s.db.ns.Scan(ctx, store.Range{Prefix: chanPrefix(id) + "n/"}) {
		if err != nil {
			return 0, err
		}
		if no, err := VerifyNotice(ent.Value); err == nil && no.Following {
			n++
		}
	}
	return n, nil
}

// CollectNotices fetches now the follow notices pinning relays hold for an owned channel.
func (s *Service) CollectNotices(ctx context.Context, id ChannelID) error {
	ch, err := s.owned(id)
	if err != nil {
		return err
	}
	s.collectNotices(ctx, ch)
	return nil
}
