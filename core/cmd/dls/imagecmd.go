package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dls-project/dls/core/diskimage"
)

type bootProfile struct {
	Kernel  string `json:"kernel"`
	Initrd  string `json:"initrd"`
	Cmdline string `json:"cmdline"`
	Confirm bool   `json:"confirm"`
	Loader  string `json:"loader,omitempty"`
}

// apiImage is an image as the API shows it.
type apiImage struct {
	Name      string       `json:"name"`
	Storage   string       `json:"storage"`
	Source    string       `json:"source,omitempty"`
	Boot      *bootProfile `json:"boot,omitempty"`
	Origin    string       `json:"origin"`
	CreatedAt time.Time    `json:"created_at"`
	UpdatedAt time.Time    `json:"updated_at"`
	Version   *apiVersion  `json:"version,omitempty"`
}

// apiVersion is an image version as the API shows it.
type apiVersion struct {
	Image   string    `json:"image"`
	Number  uint64    `json:"number"`
	Size    int64     `json:"size"`
	Created time.Time `json:"created"`
	Current bool      `json:"current"`
}

func imageCommand() *command {
	return &command{
		name:    "image",
		summary: "Manage images and their versions",
		help: `An image is a disk clients boot, kept by a storage plugin as numbered
versions; a client's volume is a clone of the current version.
`,
		sub: []*command{imageList(), imageGet(), imageAdd(), imageDelete(), imageVersions(), imageSnapshot(),
			imagePromote(), imageImport(), imageCurrent(), imageRollback(), imageRollout(), imageDeleteVersion()},
	}
}

// imagePath is the API path of image name.
func imagePath(name string) string { return "/images/" + url.PathEscape(name) }

const (
	sourceHelp = `--source names a file on this machine that you can read: dls streams it to
the host (any size the host's storage holds; it needs that much free space
in its data dir while the storage imports it). --host-source names a file
on the host's own disk, under a folder listed in its images { import_dirs }
(none by default).
`
	fromDirHelp = `--from-dir builds an ext4 disk of a directory tree here first (mke2fs -d,
e2fsprogs; as root, to read every file of a root filesystem): the tree's
size plus a quarter (at least 128 MiB), rounded up to 64 MiB, unless --size
(e.g. 2G, 1500M); into --out, else a temporary file removed after the
upload.
`
)

func imageList() *command {
	return &command{
		name: "list", api: true,
		summary: "List images",
		example: "dls image list",
		run: func(ctx context.Context, c *cli, _ []string) error {
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			b, err := conn.call(ctx, "GET", "/images", nil)
			if err != nil || c.api.json() {
				return c.raw(b, err)
			}
			var ims []apiImage
			if err := json.Unmarshal(b, &ims); err != nil {
				return fmt.Errorf("decode images: %w", err)
			}
			rows := make([][]string, len(ims))
			for i, im := range ims {
				boot := "sanboot"
				if im.Boot != nil {
					boot = im.Boot.Kernel
				}
				rows[i] = []string{im.Name, im.Storage, im.Origin, boot, im.Source}
			}
			return c.table("NAME\tSTORAGE\tORIGIN\tBOOT\tSOURCE", rows)
		},
	}
}

func imageGet() *command {
	return &command{
		name: "get", args: "NAME", nargs: 1, what: "image name", api: true,
		summary: "Show an image",
		example: "dls image get win11",
		run: func(ctx context.Context, c *cli, args []string) error {
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			b, err := conn.call(ctx, "GET", imagePath(args[0]), nil)
			return c.showImage(b, err)
		},
	}
}

func imageAdd() *command {
	var (
		storage, source, hostSource string
		boot                        bootProfile
	)
	return &command{
		name: "add", args: "NAME [--storage STORAGE] [--source FILE | --host-source PATH]", nargs: 1, what: "image name", api: true,
		summary: "Add an image, and import its first version",
		help: `With --source or --host-source, add imports version 1 before answering
(this can take a while); if the import fails, the image is removed again.
` + sourceHelp + `
Without --storage, the host puts the image on its only storage plugin
(and names them if it has several). Without --kernel, clients sanboot
their volume; --kernel, --initrd, --cmdline, --confirm and --loader make a boot
profile instead.
`,
		example: "dls image add win11 --source ~/win11.raw",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&storage, "storage", "", "`INSTANCE` storage plugin instance that holds the image (default: the host's only one)")
			fs.StringVar(&source, "source", "", "raw disk `FILE` here, streamed to the host, to import as version 1")
			fs.StringVar(&hostSource, "host-source", "", "`PATH` raw disk file on the host (under its images.import_dirs) to import as version 1")
			fs.StringVar(&boot.Kernel, "kernel", "", "boot profile: kernel `URL` or path (default: sanboot the volume)")
			fs.StringVar(&boot.Initrd, "initrd", "", "boot profile: initrd `URL` or path")
			fs.StringVar(&boot.Cmdline, "cmdline", "", "`ARGS` boot profile: kernel command line")
			fs.BoolVar(&boot.Confirm, "confirm", false, "boot profile: the OS confirms its boot (sessions end at booted)")
			fs.StringVar(&boot.Loader, "loader", "", "`LOADER` boot profile: first stage of EFI x64 machines, ipxe (default) or shim (Secure Boot: shim, GRUB, signed kernel)")
		},
		run: func(ctx context.Context, c *cli, args []string) error {
			switch {
			case source != "" && hostSource != "":
				return usagef("--source and --host-source exclude each other")
			case boot.Kernel == "" && (boot.Initrd != "" || boot.Cmdline != "" || boot.Confirm || boot.Loader != ""):
				return usagef("--initrd, --cmdline, --confirm and --loader go with --kernel")
			}
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			name, path := args[0], imagePath(args[0])
			var up *upload
			if source != "" {
				// Opened first: a file that cannot be read creates nothing.
				if up, err = openUpload(source); err != nil {
					return err
				}
				defer up.f.Close()
			}
			in := map[string]any{"name": name}
			if storage != "" {
				in["storage"] = storage
			}
			if hostSource != "" {
				in["source"] = hostSource
			}
			if boot.Kernel != "" {
				in["boot"] = boot
			}
			b, err := conn.call(ctx, "POST", "/images", in)
			if err != nil || up == nil {
				return c.showImage(b, err)
			}
			vb, err := conn.call(ctx, "POST", path+"/versions", *up)
			if err != nil {
				// The image exists only once it has a version, as with
				// --host-source, where the host removes it itself.
				if _, derr := conn.call(context.WithoutCancel(ctx), "DELETE", path, nil); derr != nil {
					return fmt.Errorf("upload %s: %w (and image %s stays, without a version: %v; remove it with dls image delete %s)", source, err, name, derr, name)
				}
				return fmt.Errorf("upload %s: %w (image %s was not added)", source, err, name)
			}
			if b, err = withVersion(b, vb); err != nil {
				return err
			}
			return c.showImage(b, nil)
		},
	}
}

func imageDelete() *command {
	var purge bool
	return &command{
		name: "delete", args: "NAME", nargs: 1, what: "image name", api: true,
		summary: "Delete an image",
		example: "dls image delete win10 --purge",
		flags: func(fs *flag.FlagSet) {
			fs.BoolVar(&purge, "purge", false, "also delete the image and its versions from its storage")
		},
		run: func(ctx context.Context, c *cli, args []string) error {
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			p := imagePath(args[0])
			if purge {
				p += "?purge=true"
			}
			if _, err := conn.call(ctx, "DELETE", p, nil); err != nil {
				return err
			}
			if !c.api.json() {
				fmt.Fprintf(c.stdout, "image %s deleted\n", args[0])
			}
			return nil
		},
	}
}

func imageVersions() *command {
	return &command{
		name: "versions", args: "NAME", nargs: 1, what: "image name", api: true,
		summary: "List an image's versions",
		example: "dls image versions win11",
		run: func(ctx context.Context, c *cli, args []string) error {
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			b, err := conn.call(ctx, "GET", imagePath(args[0])+"/versions", nil)
			if err != nil || c.api.json() {
				return c.raw(b, err)
			}
			var vs []apiVersion
			if err := json.Unmarshal(b, &vs); err != nil {
				return fmt.Errorf("decode versions: %w", err)
			}
			return c.versionTable(vs)
		},
	}
}

func imageSnapshot() *command {
	return &command{
		name: "snapshot", args: "NAME", nargs: 1, what: "image name", api: true,
		summary: "New version: a snapshot of the current content",
		example: "dls image snapshot win11",
		run: func(ctx context.Context, c *cli, args []string) error {
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			return c.newVersion(ctx, conn, args[0], map[string]string{"action": "snapshot"})
		},
	}
}

func imagePromote() *command {
	var client string
	return &command{
		name: "promote", args: "NAME --client CLIENT", nargs: 1, what: "image name", api: true,
		summary: "New version: the client's volume",
		example: "dls image promote win11 --client pc-01",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&client, "client", "", "`CLIENT` client whose volume becomes the new version")
		},
		run: func(ctx context.Context, c *cli, args []string) error {
			if client == "" {
				return usagef("promote needs --client")
			}
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			return c.newVersion(ctx, conn, args[0], map[string]string{"action": "promote", "client": client})
		},
	}
}

func imageImport() *command {
	var source, hostSource, fromDir, out, imgSize string
	return &command{
		name: "import", args: "NAME --source FILE | --host-source PATH | --from-dir ROOTFS", nargs: 1, what: "image name", api: true,
		summary: "New version: a raw disk file, or a disk made from a directory tree",
		help:    sourceHelp + "\n" + fromDirHelp,
		example: "dls image import win11 --source ~/win11-v4.raw",
		flags: func(fs *flag.FlagSet) {
			fs.StringVar(&source, "source", "", "raw disk `FILE` here, streamed to the host")
			fs.StringVar(&hostSource, "host-source", "", "`PATH` raw disk file on the host, under its images.import_dirs")
			fs.StringVar(&fromDir, "from-dir", "", "`ROOTFS` directory tree to make an ext4 disk of and import")
			fs.StringVar(&out, "out", "", "`FILE` with --from-dir: where the disk is written and kept (default: a temporary file)")
			fs.StringVar(&imgSize, "size", "", "`SIZE` with --from-dir: disk size, bytes or with K, M, G, T (default: from the tree's size)")
		},
		run: func(ctx context.Context, c *cli, args []string) error {
			switch {
			case count(source != "", hostSource != "", fromDir != "") != 1:
				return usagef("import needs one of --source, --host-source or --from-dir")
			case fromDir == "" && (out != "" || imgSize != ""):
				return usagef("--out and --size go with --from-dir")
			}
			var diskSize int64
			if imgSize != "" {
				var err error
				if diskSize, err = parseSize(imgSize); err != nil {
					return usagef("--size: %v", err)
				}
			}
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			name := args[0]
			var body any = map[string]string{"action": "import", "source": hostSource}
			src := source
			if fromDir != "" {
				built, cleanup, err := c.buildDisk(ctx, name, fromDir, out, diskSize)
				if err != nil {
					return err
				}
				defer cleanup()
				src = built
			}
			if src != "" {
				up, err := openUpload(src)
				if err != nil {
					return err
				}
				defer up.f.Close()
				body = *up
			}
			return c.newVersion(ctx, conn, name, body)
		},
	}
}

// newVersion asks for a new version of image name (snapshot, promote,
// import) and prints it.
func (c *cli) newVersion(ctx context.Context, conn *apiConn, name string, body any) error {
	b, err := conn.call(ctx, "POST", imagePath(name)+"/versions", body)
	if err != nil || c.api.json() {
		return c.raw(b, err)
	}
	var v apiVersion
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("decode version: %w", err)
	}
	return c.versionTable([]apiVersion{v})
}

func imageCurrent() *command {
	return &command{
		name: "current", args: "NAME VERSION", nargs: 2, what: "image name and version", api: true,
		summary: "Make VERSION the one new volumes clone",
		example: "dls image current win11 3",
		run: func(ctx context.Context, c *cli, args []string) error {
			n, err := parseUint(args[1], "version")
			if err != nil {
				return err
			}
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			b, err := conn.call(ctx, "PUT", imagePath(args[0])+"/versions/current", map[string]uint64{"version": n})
			if err != nil || c.api.json() {
				return c.raw(b, err)
			}
			fmt.Fprintf(c.stdout, "image %s: version %d is current\n", args[0], n)
			return nil
		},
	}
}

func imageDeleteVersion() *command {
	return &command{
		name: "delete-version", args: "NAME VERSION", nargs: 2, what: "image name and version", api: true,
		summary: "Delete a version that is not the current one",
		example: "dls image delete-version win11 2",
		run: func(ctx context.Context, c *cli, args []string) error {
			n, err := parseUint(args[1], "version")
			if err != nil {
				return err
			}
			conn, err := c.connect(true)
			if err != nil {
				return err
			}
			if _, err := conn.call(ctx, "DELETE", imagePath(args[0])+"/versions/"+strconv.FormatUint(n, 10), nil); err != nil {
				return err
			}
			if !c.api.json() {
				fmt.Fprintf(c.stdout, "image %s: version %d deleted\n", args[0], n)
			}
			return nil
		},
	}
}

func (c *cli) versionTable(vs []apiVersion) error {
	rows := make([][]string, len(vs))
	for i, v := range vs {
		cur := ""
		if v.Current {
			cur = "*"
		}
		rows[i] = []string{strconv.FormatUint(v.Number, 10), size(v.Size), when(v.Created), cur}
	}
	return c.table("VERSION\tSIZE\tCREATED\tCURRENT", rows)
}

// showImage prints the image a call answered.
func (c *cli) showImage(b []byte, err error) error {
	if err != nil || c.api.json() {
		return c.raw(b, err)
	}
	var im apiImage
	if err := json.Unmarshal(b, &im); err != nil {
		return fmt.Errorf("decode image: %w", err)
	}
	pairs := []string{"Name", im.Name, "Storage", im.Storage, "Origin", im.Origin, "Source", im.Source}
	if im.Boot == nil {
		pairs = append(pairs, "Boot", "sanboot (the client's volume)")
	} else {
		loader := im.Boot.Loader
		if loader == "" {
			loader = "ipxe"
		}
		pairs = append(pairs, "Kernel", im.Boot.Kernel, "Initrd", im.Boot.Initrd, "Cmdline", im.Boot.Cmdline, "Confirm", yesNo(im.Boot.Confirm), "Loader", loader)
	}
	if im.Version != nil {
		pairs = append(pairs, "Imported", fmt.Sprintf("version %d (%s)", im.Version.Number, size(im.Version.Size)))
	}
	pairs = append(pairs, "Created", when(im.CreatedAt), "Updated", when(im.UpdatedAt))
	return c.fields(pairs...)
}

// openUpload opens a raw disk file here to stream to the host.
func openUpload(path string) (*upload, error) {
	f, err := os.Open(path)
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			err = pe.Err
		}
		return nil, fmt.Errorf("--source %s: cannot read it here: %v (--source names a file on this machine; --host-source one on the host)", path, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = errors.New("not a regular file")
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("--source %s: %v", path, err)
	}
	return &upload{f: f, size: fi.Size()}, nil
}

// withVersion adds an uploaded version (POST versions' answer) to an image
// (POST images' answer), as POST images answers an import.
func withVersion(image, version []byte) ([]byte, error) {
	var im map[string]any
	var v any
	if err := json.Unmarshal(image, &im); err != nil {
		return nil, fmt.Errorf("decode image: %w", err)
	}
	if err := json.Unmarshal(version, &v); err != nil {
		return nil, fmt.Errorf("decode version: %w", err)
	}
	im["version"] = v
	return json.Marshal(im)
}

// count is how many of conds hold.
func count(conds ...bool) int {
	n := 0
	for _, c := range conds {
		if c {
			n++
		}
	}
	return n
}

// buildDisk makes the ext4 disk of dir for image name, into out or a
// temporary file, and returns its absolute path (what is uploaded) and
// what removes the temporary file.
func (c *cli) buildDisk(ctx context.Context, name, dir, out string, want int64) (string, func(), error) {
	cleanup := func() {}
	if out == "" {
		tmp, err := os.MkdirTemp("", "dls-image-")
		if err != nil {
			return "", nil, fmt.Errorf("image %s from %s: %w", name, dir, err)
		}
		cleanup = func() { os.RemoveAll(tmp) }
		out = filepath.Join(tmp, name+".img")
	}
	abs, err := filepath.Abs(out)
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("image %s from %s: %w", name, dir, err)
	}
	start := c.now()
	got, err := diskimage.Ext4FromDir(ctx, dir, abs, want)
	if err != nil {
		cleanup()
		return "", nil, fmt.Errorf("image %s from %s: %w", name, dir, err)
	}
	fmt.Fprintf(c.stderr, "made %s: ext4, %s, from %s in %s\n", abs, size(got), dir, c.now().Sub(start).Round(time.Millisecond))
	return abs, cleanup, nil
}

// parseSize reads a size in bytes, or with a binary unit: 512M, 2G, 1.5G
// (K, M, G, T; an optional "iB" or "B" after it).
func parseSize(s string) (int64, error) {
	t := strings.TrimSuffix(strings.TrimSuffix(strings.ToUpper(strings.TrimSpace(s)), "B"), "I")
	mult := float64(1)
	if t != "" {
		if i := strings.IndexByte("KMGT", t[len(t)-1]); i >= 0 {
			mult = float64(int64(1) << (10 * (i + 1)))
			t = t[:len(t)-1]
		}
	}
	v, err := strconv.ParseFloat(t, 64)
	if err != nil || v <= 0 || v*mult > 1<<50 {
		return 0, fmt.Errorf("size %q: want a positive number of bytes, or with K, M, G or T", s)
	}
	// mke2fs takes whole KiB.
	return int64(v*mult) / 1024 * 1024, nil
}
