package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/dls-project/dls/core/diskimage"
)

const imageUsage = `Usage:
  dls image list
  dls image get NAME
  dls image add NAME --storage STORAGE [--source FILE | --host-source PATH]
                [--kernel K [--initrd I] [--cmdline C] [--confirm]]
  dls image delete NAME [--purge]
  dls image versions NAME
  dls image snapshot NAME                 new version: a snapshot of the current content
  dls image promote NAME --client CLIENT  new version: the client's volume
  dls image import NAME --source FILE     new version: a raw disk file from here
  dls image import NAME --host-source PATH
                                          new version: a raw disk file on the host,
                                          under its images.import_dirs
  dls image import NAME --from-dir ROOTFS [--out FILE] [--size SIZE]
                                          new version: an ext4 disk made from a
                                          directory tree (mke2fs -d, e2fsprogs)
  dls image current NAME VERSION          make VERSION the one new volumes clone
  dls image delete-version NAME VERSION

add with --source imports version 1 before answering (this can take a
while); if the import fails, the image is removed again. delete --purge also
deletes the image and its versions from its storage. --source names a file on
this machine that you can read: dls streams it to the host (any size the
host's storage holds; it needs that much free space in its data dir while the
storage imports it). --host-source names a file on the host's own disk, under
a folder listed in its images { import_dirs } (none by default).
--from-dir builds the disk here first (as root, to read every file of a root
filesystem): the tree's size plus a quarter (at least 128 MiB), rounded up to
64 MiB, unless --size (e.g. 2G, 1500M); into --out, else a temporary file
removed after the upload. Common flags: --server URL, --tls-ca FILE,
--insecure, -o table|json.
`

type bootProfile struct {
	Kernel  string `json:"kernel"`
	Initrd  string `json:"initrd"`
	Cmdline string `json:"cmdline"`
	Confirm bool   `json:"confirm"`
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

func (c *cli) image(ctx context.Context, args []string) error {
	verb, args, err := c.verb(args)
	if err != nil {
		return err
	}
	fs, f := c.flags(imageUsage)
	var (
		storage, source, client, kernel, initrd, cmdline *string
		hostSource, fromDir, out, imgSize                *string
		confirm, purge                                   *bool
	)
	want, what := 1, "image name"
	switch verb {
	case "list":
		want = 0
	case "get", "versions", "snapshot":
	case "add":
		storage = fs.String("storage", "", "storage plugin instance that holds the image")
		source = fs.String("source", "", "raw disk file here, streamed to the host, to import as version 1")
		hostSource = fs.String("host-source", "", "raw disk file on the host (under its images.import_dirs) to import as version 1")
		kernel = fs.String("kernel", "", "boot profile: kernel URL or path (default: sanboot the volume)")
		initrd = fs.String("initrd", "", "boot profile: initrd")
		cmdline = fs.String("cmdline", "", "boot profile: kernel command line")
		confirm = fs.Bool("confirm", false, "boot profile: the OS confirms its boot (sessions end at booted)")
	case "delete":
		purge = fs.Bool("purge", false, "also delete the image and its versions from its storage")
	case "promote":
		client = fs.String("client", "", "client whose volume becomes the new version")
	case "import":
		source = fs.String("source", "", "raw disk file here, streamed to the host")
		hostSource = fs.String("host-source", "", "raw disk file on the host, under its images.import_dirs")
		fromDir = fs.String("from-dir", "", "directory tree to make an ext4 disk of and import")
		out = fs.String("out", "", "with --from-dir: where the disk is written and kept (default: a temporary file)")
		imgSize = fs.String("size", "", "with --from-dir: disk size, bytes or with K, M, G, T (default: from the tree's size)")
	case "current", "delete-version":
		want, what = 2, "image name and version"
	default:
		return usagef("unknown command %q", verb)
	}
	pos, err := c.parse(fs, f, args, want, want, what)
	if err != nil {
		return err
	}
	var n uint64
	if want == 2 {
		if n, err = parseUint(pos[1], "version"); err != nil {
			return err
		}
	}
	switch {
	case verb == "add" && *storage == "":
		return usagef("add needs --storage")
	case verb == "add" && *source != "" && *hostSource != "":
		return usagef("--source and --host-source exclude each other")
	case verb == "add" && *kernel == "" && (*initrd != "" || *cmdline != "" || *confirm):
		return usagef("--initrd, --cmdline and --confirm go with --kernel")
	case verb == "promote" && *client == "":
		return usagef("promote needs --client")
	case verb == "import" && count(*source != "", *hostSource != "", *fromDir != "") != 1:
		return usagef("import needs one of --source, --host-source or --from-dir")
	case verb == "import" && *fromDir == "" && (*out != "" || *imgSize != ""):
		return usagef("--out and --size go with --from-dir")
	}
	var diskSize int64
	if verb == "import" && *imgSize != "" {
		if diskSize, err = parseSize(*imgSize); err != nil {
			return usagef("--size: %v", err)
		}
	}
	conn, err := c.connect(f, true)
	if err != nil {
		return err
	}
	var name, path string
	if want > 0 {
		name = pos[0]
		path = "/images/" + url.PathEscape(name)
	}
	switch verb {
	case "list":
		b, err := conn.call(ctx, "GET", "/images", nil)
		if err != nil || f.json() {
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
	case "get":
		b, err := conn.call(ctx, "GET", path, nil)
		return c.showImage(f, b, err)
	case "add":
		var up *upload
		if *source != "" {
			// Opened first: a file that cannot be read creates nothing.
			if up, err = openUpload(*source); err != nil {
				return err
			}
			defer up.f.Close()
		}
		in := map[string]any{"name": name, "storage": *storage}
		if *hostSource != "" {
			in["source"] = *hostSource
		}
		if *kernel != "" {
			in["boot"] = bootProfile{Kernel: *kernel, Initrd: *initrd, Cmdline: *cmdline, Confirm: *confirm}
		}
		b, err := conn.call(ctx, "POST", "/images", in)
		if err != nil || up == nil {
			return c.showImage(f, b, err)
		}
		vb, err := conn.call(ctx, "POST", path+"/versions", *up)
		if err != nil {
			// The image exists only once it has a version, as with
			// --host-source, where the host removes it itself.
			if _, derr := conn.call(context.WithoutCancel(ctx), "DELETE", path, nil); derr != nil {
				return fmt.Errorf("upload %s: %w (and image %s stays, without a version: %v; remove it with dls image delete %s)", *source, err, name, derr, name)
			}
			return fmt.Errorf("upload %s: %w (image %s was not added)", *source, err, name)
		}
		if b, err = withVersion(b, vb); err != nil {
			return err
		}
		return c.showImage(f, b, nil)
	case "delete":
		p := path
		if *purge {
			p += "?purge=true"
		}
		if _, err := conn.call(ctx, "DELETE", p, nil); err != nil {
			return err
		}
		if !f.json() {
			fmt.Fprintf(c.stdout, "image %s deleted\n", name)
		}
		return nil
	case "versions":
		b, err := conn.call(ctx, "GET", path+"/versions", nil)
		if err != nil || f.json() {
			return c.raw(b, err)
		}
		var vs []apiVersion
		if err := json.Unmarshal(b, &vs); err != nil {
			return fmt.Errorf("decode versions: %w", err)
		}
		return c.versionTable(vs)
	case "snapshot", "promote", "import":
		in := map[string]string{"action": verb}
		if verb == "promote" {
			in["client"] = *client
		}
		var body any = in
		if verb == "import" {
			in["source"] = *hostSource
			src := *source
			if *fromDir != "" {
				built, cleanup, err := c.buildDisk(ctx, name, *fromDir, *out, diskSize)
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
		}
		b, err := conn.call(ctx, "POST", path+"/versions", body)
		if err != nil || f.json() {
			return c.raw(b, err)
		}
		var v apiVersion
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("decode version: %w", err)
		}
		return c.versionTable([]apiVersion{v})
	case "current":
		b, err := conn.call(ctx, "PUT", path+"/versions/current", map[string]uint64{"version": n})
		if err != nil || f.json() {
			return c.raw(b, err)
		}
		fmt.Fprintf(c.stdout, "image %s: version %d is current\n", name, n)
		return nil
	case "delete-version":
		if _, err := conn.call(ctx, "DELETE", path+"/versions/"+strconv.FormatUint(n, 10), nil); err != nil {
			return err
		}
		if !f.json() {
			fmt.Fprintf(c.stdout, "image %s: version %d deleted\n", name, n)
		}
		return nil
	}
	return nil
}

// raw prints an answer as JSON, or returns the call's error.
func (c *cli) raw(b []byte, err error) error {
	if err != nil {
		return err
	}
	c.printJSON(b)
	return nil
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
func (c *cli) showImage(f *commonFlags, b []byte, err error) error {
	if err != nil || f.json() {
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
		pairs = append(pairs, "Kernel", im.Boot.Kernel, "Initrd", im.Boot.Initrd, "Cmdline", im.Boot.Cmdline, "Confirm", yesNo(im.Boot.Confirm))
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
