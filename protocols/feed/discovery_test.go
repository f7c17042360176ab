package feed

import (
	"testing"
	"time"

	"github.com/madang-p2p/madang/geo"
)

func shop(name, category, geohash string, tags ...string) ProfileFields {
	return ProfileFields{Name: name, Category: category, Geohash: geohash, Tags: tags}
}

// Channels are found through the directory by their precision-5 cell and the 8 around it, by category and
// by tag; results are verified cards ranked by distance, then by the recency of their posts.
func TestNearbyByCellCategoryAndTag(t *testing.T) {
	_, nodes := testNet(t, 6, netOpts{})
	east, _ := geo.Neighbours("wydm9")
	busan := geo.Encode(35.1798, 129.0750, 7)
	shops := []ProfileFields{
		shop("Haenam Mart", "mart", "wydm9qy", "kimchi"), // 0: at the search point's cell
		shop("Corner Mart", "mart", "wydm9qy", "snacks"), // 1: same spot, posts later
		shop("Far East Mart", "mart", east[2]+"00"),      // 2: the neighbouring cell to the east
		shop("Bean Cafe", "cafe", "wydm9qz", "coffee"),   // 3: another category
		shop("Busan Mart", "mart", busan, "kimchi"),      // 4: far away
	}
	ids := make([]ChannelID, len(shops))
	for i, f := range shops {
		in, err := nodes[i].svc.Create(t.Context(), f)
		if err != nil {
			t.Fatal(err)
		}
		ids[i] = ChannelID(in.ChannelID)
	}
	post(t, nodes[0], ids[0], "kimchi day")
	time.Sleep(5 * time.Millisecond) // distinct post times (ms resolution)
	post(t, nodes[1], ids[1], "snack sale")
	searcher := nodes[5]
	names := func(fs []Found) []string {
		var out []string
		for _, f := range fs {
			out = append(out, f.Card.Profile.Name)
		}
		return out
	}
	var got []Found
	waitFor(t, 20*time.Second, func() bool {
		var err error
		got, err = searcher.svc.Nearby(t.Context(), "wydm9qx", "mart", "", 10)
		return err == nil && len(got) == 3 && got[0].Card.Head != nil && got[0].Card.Head.Seq == 1 && got[1].Card.Head.Seq == 1
	}, "three marts around wydm9qx, got %v", names(got))
	// Same spot: the one that posted last first; then the neighbouring cell.
	if n := names(got); n[0] != "Corner Mart" || n[1] != "Haenam Mart" || n[2] != "Far East Mart" {
		t.Fatalf("ranking %v", n)
	}
	if got[0].Distance > 200 || got[2].Distance < got[0].Distance {
		t.Fatalf("distances %v %v", got[0].Distance, got[2].Distance)
	}
	all, err := searcher.svc.Nearby(t.Context(), "wydm9qx", "", "", 10)
	if err != nil || len(all) != 4 {
		t.Fatalf("without category: %v %v", err, names(all))
	}
	byTag, err := searcher.svc.Nearby(t.Context(), "", "", "#Kimchi", 10)
	if err != nil || len(byTag) != 2 {
		t.Fatalf("by tag: %v %v", err, names(byTag))
	}
	byTagNear, err := searcher.svc.Nearby(t.Context(), "wydm9qx", "", "kimchi", 10)
	if err != nil || len(byTagNear) != 1 || byTagNear[0].Card.Profile.Name != "Haenam Mart" {
		t.Fatalf("near with tag: %v %v", err, names(byTagNear))
	}
	if _, err := searcher.svc.Nearby(t.Context(), "wydm", "", "", 10); err == nil {
		t.Fatal("a 4-character geohash accepted")
	}
	if _, err := searcher.svc.Nearby(t.Context(), "wydm9", "bank", "", 10); err == nil {
		t.Fatal("an unknown category accepted")
	}

	// A profile update moves the card: the old cell no longer lists it.
	if _, err := nodes[0].svc.UpdateProfile(t.Context(), ids[0], ProfileFields{Geohash: busan}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 20*time.Second, func() bool {
		got, _ = searcher.svc.Nearby(t.Context(), "wydm9qx", "mart", "", 10)
		return len(got) == 2
	}, "moved shop gone from the old cell: %v", names(got))
}
