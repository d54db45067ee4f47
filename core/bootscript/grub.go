package bootscript

import (
	"fmt"
	"strconv"
	"strings"
	"text/template"
)

// GRUBName is the built-in GRUB configuration's name, as errors show it.
const GRUBName = "builtin:grub"

// grubText is a machine's GRUB configuration in the signed chain: shim
// verified GRUB, GRUB has shim verify the kernel (the initrd is not
// verified: GRUB's shim_lock verifier skips initrds), and the kernel
// boots with root on the client's volume through open-iscsi's initramfs,
// which takes the target from the command line (no iBFT: nothing
// attached the disk before the kernel). When boot returns, the kernel
// did not start: GRUB asks the TFTP server for $prefix/failed/<token>,
// which the TFTP plugin turns into boot_failed, so the boot's session
// fails at grub at once rather than at its stage timeout. GRUB fetches the kernel and
// initrd over TFTP from the server it came from (its $root): Debian 12's
// signed GRUB has no HTTP. Every argument is a single-quoted GRUB word.
const grubText = `# DLS: {{.Client}} ({{.MAC}}) boots {{.Kernel}} through shim and GRUB, root on its volume
echo 'DLS: {{.Client}}: loading {{.Kernel}}'
linux {{grubWord .GRUBKernelPath}}{{range .GRUBArgs}} {{grubWord .}}{{end}}
{{if .Initrd}}echo 'DLS: {{.Client}}: loading {{.Initrd}}'
initrd {{grubWord .GRUBInitrdPath}}
{{end -}}
boot
{{if .Token}}source "$prefix/failed/{{.Token}}"
echo 'DLS: {{.Client}}: {{.Kernel}} did not boot (refused by Secure Boot, or not loaded): reported to the server'
{{end -}}
`

var grub = template.Must(template.New(GRUBName).Funcs(template.FuncMap{"grubWord": grubWord}).Parse(grubText))

// grubWord quotes s as one literal GRUB word: in single quotes, a single
// quote inside closing the quotes, escaped with a backslash, and
// reopening them.
func grubWord(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// GRUBKernelPath is the kernel as GRUB fetches it: /files/<Kernel> on the
// TFTP server GRUB came from (the TFTP plugin's files folder, the host's
// boot.files).
func (d ScriptData) GRUBKernelPath() string { return grubFile(d.Kernel) }

// GRUBInitrdPath is the initrd as GRUB fetches it (see GRUBKernelPath).
func (d ScriptData) GRUBInitrdPath() string { return grubFile(d.Initrd) }

func grubFile(p string) string {
	if p == "" {
		return ""
	}
	return "/files/" + strings.TrimLeft(p, "/")
}

// ISCSIArgs are the kernel arguments open-iscsi's initramfs logs in with:
// the initiator and target names, the target's address and port, and
// the CHAP credentials (iscsi_in_* for mutual CHAP) when the client has
// some.
func (d ScriptData) ISCSIArgs() []string {
	args := []string{
		"iscsi_initiator=" + d.InitiatorIQN,
		"iscsi_target_name=" + d.TargetIQN,
		"iscsi_target_ip=" + d.Server,
	}
	port := d.ISCSIPort
	if port == 0 {
		port = 3260
	}
	args = append(args, "iscsi_target_port="+strconv.Itoa(port))
	if d.CHAPSecret != "" {
		args = append(args, "iscsi_username="+d.CHAPUser, "iscsi_password="+d.CHAPSecret)
		if d.CHAPMutualSecret != "" {
			args = append(args, "iscsi_in_username="+d.CHAPMutualUser, "iscsi_in_password="+d.CHAPMutualSecret)
		}
	}
	return args
}

// GRUBArgs is the kernel command line of the GRUB configuration, word by
// word: the image's Cmdline, ISCSIArgs, then ConfirmArgs.
func (d ScriptData) GRUBArgs() []string {
	args := strings.Fields(d.Cmdline)
	args = append(args, d.ISCSIArgs()...)
	if c := d.ConfirmArgs(); c != "" {
		args = append(args, strings.Fields(c)...)
	}
	return args
}

// RenderGRUB renders d's GRUB configuration (the built-in one: custom
// templates are iPXE scripts). d must have a kernel: a sanboot image has
// nothing for GRUB to load. Besides Check, quotes and backslashes are
// refused everywhere: GRUB escapes them on the kernel command line, so
// the kernel would not see what the image says.
func RenderGRUB(d ScriptData) (string, error) {
	if d.Kernel == "" {
		return "", fmt.Errorf("render GRUB configuration for client %s: image %s has no kernel (a boot profile is needed for loader shim)", d.Client, d.Image)
	}
	if err := d.Check(); err != nil {
		return "", fmt.Errorf("render GRUB configuration for client %s: %w", d.Client, err)
	}
	for _, w := range append(d.GRUBArgs(), d.Kernel, d.Initrd) {
		if strings.ContainsAny(w, `"'\`) {
			return "", fmt.Errorf("render GRUB configuration for client %s: %q holds a quote or a backslash, which GRUB would pass to the kernel escaped", d.Client, w)
		}
	}
	var b strings.Builder
	if err := grub.Execute(&b, d); err != nil {
		return "", fmt.Errorf("render GRUB configuration for client %s: %w", d.Client, err)
	}
	return b.String(), nil
}
