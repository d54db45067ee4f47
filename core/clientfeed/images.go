package clientfeed

import (
	"context"
	"slices"
	"strings"

	"github.com/dls-project/dls/core/store"
)

// ImageChanged pushes every client of image again: what watchers derive
// from a client (the DHCP plugin's decision names its first stage by the
// image's boot profile) changed with the image, while the client rows did
// not, so Changed would send nothing. Call it after an image write
// commits.
func (f *Feed) ImageChanged(image string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.loaded {
		return // nobody watches: the first Watch reads the store
	}
	var set []store.Client
	for _, c := range f.byName {
		if c.Image == image {
			set = append(set, c)
		}
	}
	slices.SortFunc(set, func(a, b store.Client) int { return strings.Compare(a.Name, b.Name) })
	f.publishLocked(set, nil)
}

// Image writes reach the feed too: see ImageChanged.

func (n *notifying) PutImage(ctx context.Context, img store.Image) error {
	if err := n.Store.PutImage(ctx, img); err != nil {
		return err
	}
	n.feed.ImageChanged(img.Name)
	return nil
}

func (n *notifying) DeleteImage(ctx context.Context, name string) error {
	if err := n.Store.DeleteImage(ctx, name); err != nil {
		return err
	}
	n.feed.ImageChanged(name)
	return nil
}
