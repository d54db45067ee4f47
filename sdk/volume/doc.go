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
//
// [FormatOverlay] is a copy-on-write clone of a shared, read-only base
// image, for storage without reflinks: a sparse delta file holding the
// clusters written since the clone was made, at their own offsets, and a
// map file recording which clusters those are (a 4 KiB header, then one bit
// per cluster). [CreateOverlay] makes one in constant time, whatever the
// base's size; [ResetOverlay] empties one; [CopyVolume] flattens any volume
// into a new sparse raw file, say to make a client's overlay a new image
// version:
//
//	d, err := volume.CreateOverlay("/srv/images/lab/v3.raw",
//		"/srv/volumes/pc-01/delta", "/srv/volumes/pc-01/map", 0)
//	// ... the target: v, err := volume.Open(d)
//
// An overlay's first write into a cluster copies the whole cluster (base
// bytes merged with the new ones) into the delta; later writes go there in
// place. The map on disk learns of new clusters only at Flush, after their
// data is durable, so:
//
//   - once Flush has returned, every earlier write and discard survives a
//     crash of the process or of the machine;
//   - a first write into a cluster that no Flush followed may be lost in a
//     crash, but never in part: the cluster reads either as before the
//     write or with all of it, never zeros or garbage;
//   - a Flush runs on its own [DefaultFlushInterval] (5 s) after the first
//     such write, so at most that much is lost even if the initiator never
//     flushes ([OptionFlushInterval] changes it).
//
// FORMAT.md, beside this file, describes the files byte by byte and the
// crash guarantee in full.
package volume
