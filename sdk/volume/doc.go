// Package volume describes where a client's disk lives and opens it for
// block I/O.
//
// # Descriptors
//
// A storage plugin never serves disk blocks itself. When the host attaches
// a client's volume, the storage plugin answers with a [Descriptor]: the
// format of the volume, the absolute paths of the files (or block devices)
// that hold it, its size and block size, and whether it is read-only. The
// host hands that descriptor to the iSCSI target plugin, a different
// process on the same machine, which calls [Open] and serves the client's
// reads and writes straight from those files. Block data therefore never
// crosses gRPC: only the descriptor does, once per attachment.
//
// A raw descriptor for a 20 GiB disk looks like this:
//
//	volume.Descriptor{
//		Format: volume.FormatRaw,
//		Paths:  []string{"/var/lib/dls/storage/tank/volumes/pc-01/disk.raw"},
//		Size:   20 << 30,
//	}
//
// # What a storage plugin promises
//
// A storage plugin that returns a descriptor from Attach promises, until the
// matching Detach:
//
//   - the paths exist, are absolute, and name the same objects in the target
//     plugin's process (same machine, same mount namespace), and that
//     process may open them for reading, and for writing unless ReadOnly;
//   - each raw file is a regular file or a block device (a ZFS zvol, an LVM
//     volume) at least Size bytes long, and nothing truncates, replaces or
//     deletes it while it is attached;
//   - no one else writes to it: the target is the only writer.
//
// [Open] checks what it can (the format, the paths, the file type and size)
// and refuses the rest with an error that names the path. [Descriptor.Validate]
// runs the same descriptor checks without touching the files, so a storage
// plugin can test its own answers.
//
// # What a target gets
//
// [Open] returns a [Volume]: an [io.ReaderAt] and [io.WriterAt] bounded by
// the descriptor's Size, safe for concurrent use by many goroutines, with
// Flush (make written data durable), Discard (free a range, reading back as
// zeros) and Close. I/O outside the volume fails with [ErrOutOfRange];
// writes to a read-only volume fail with [ErrReadOnly].
//
// # Formats
//
// [FormatRaw] is one file holding the whole disk, byte for byte.
// [FormatOverlay] (a copy-on-write delta over a shared base image) is
// reserved: descriptors using it validate, but [Open] refuses them with
// [ErrUnsupportedFormat] until the SDK implements it.
package volume
