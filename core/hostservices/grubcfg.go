package hostservices

import (
	"context"

	"github.com/dls-project/dls/core/bootscript"
	"github.com/dls-project/dls/core/store"
)

// renderGRUB renders client c's GRUB configuration: what Debian's signed
// GRUB runs for it in the shim chain (bootscript.RenderGRUB), with the
// boot's token when its image confirms. It is rendered at each request,
// not cached: GRUB asks once per boot. The architecture is EFI x64, the
// only one shim is given to.
func (s *Services) renderGRUB(ctx context.Context, c store.Client) (string, error) {
	d, err := s.scriptData(ctx, c, archOf{arch: 7, known: true})
	if err != nil {
		return "", err
	}
	return bootscript.RenderGRUB(d)
}
