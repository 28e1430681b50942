package network

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// The DNS files of a task: WriteDNSFiles writes hosts, resolv.conf and
// hostname into a directory of the task, and the caller bind-mounts them at
// /etc/hosts, /etc/resolv.conf and /etc/hostname (runtime/spec's
// ExtraMounts). They follow what Docker writes, so images behave as they do
// under Docker.
//
// resolv.conf starts from the host's /etc/resolv.conf.
//
//   - Bridge mode. The task has its own network namespace, where the host's
//     loopback resolvers are unreachable. If the host file names only
//     loopback nameservers (typically systemd-resolved's stub, 127.0.0.53),
//     systemd-resolved's own file (/run/systemd/resolve/resolv.conf, which
//     lists the real upstream servers) is used instead when it exists. Then
//     loopback and unspecified nameservers are dropped, and IPv6 ones too
//     unless the task has an IPv6 address. If no nameserver is left, Docker's
//     defaults (8.8.8.8 and 8.8.4.4, plus Google's IPv6 pair for a task with
//     IPv6) are written and a warning returned.
//   - Host mode. The task shares the host's namespace, so the host file is
//     copied byte for byte (the stub is reachable there).
//   - None mode. The same as host mode: the task has no network, and Docker
//     keeps the host's file rather than inventing nameservers.
//
// --dns, --dns-search and --dns-option replace the nameserver, search (and
// domain) and options lines of the host file in every mode; the host's other
// lines are kept (comments are not, once the file has to be rewritten).
// Nameservers given with --dns are taken as they are, never filtered: a
// loopback one only draws a warning in bridge mode, since it works only when
// the task runs its own resolver. A single "." search domain means no search
// list at all.
//
// hosts is, in bridge and none mode, the usual localhost and IPv6 lines, then
// the --add-host entries, then one line per address of the task naming its
// hostname (and its name when that differs). In host mode it is the host's
// /etc/hosts followed by the --add-host entries.
//
// The files are written atomically (temporary file, rename), mode 0644
// whatever the umask. A rename replaces the file, and a bind mount holds on
// to the file it was made from: rewriting the files does not change what a
// running task sees, so write them before the task starts.
//
// They are not fsynced, unlike berth's state: they live in the task's
// directory and matter only while the task runs, and no task survives a
// reboot (its network namespace, processes and mounts go with it; a
// stopped task is never started again). So only a power loss could lose
// them, and then their task is gone anyway. The rename still makes every
// write all or nothing for a reader and for a crash of berth itself. Three
// files' fsyncs and the directory's cost a few milliseconds on every
// start, on the test machine.

// DNSMode is a task's network mode as far as its DNS files go.
type DNSMode string

// The network modes of a task.
const (
	// DNSBridge is a task with its own network namespace on a bridge. The
	// zero DNSMode means DNSBridge.
	DNSBridge DNSMode = "bridge"
	// DNSHost is a task in the host's network namespace.
	DNSHost DNSMode = "host"
	// DNSNone is a task with a network namespace of its own and no network.
	DNSNone DNSMode = "none"
)

// Defaults for DNSConfig's zero paths.
const (
	defaultHostResolvConf    = "/etc/resolv.conf"
	defaultSystemdResolvConf = "/run/systemd/resolve/resolv.conf"
	defaultHostHosts         = "/etc/hosts"
)

// hostGateway is --add-host's stand-in for the bridge gateway's address.
const hostGateway = "host-gateway"

// Size limits of the host files read. hosts files that block ad servers run
// to a few megabytes; no real resolv.conf comes near its limit.
const (
	maxResolvConfSize = 1 << 20
	maxHostsSize      = 64 << 20
)

// DNSConfig describes the DNS files of one task.
type DNSConfig struct {
	// Mode is the task's network mode; empty means DNSBridge.
	Mode DNSMode
	// Hostname is the task's host name, for /etc/hostname and /etc/hosts.
	// Required: printable ASCII without spaces or '#', at most 64 bytes.
	Hostname string
	// Name is the task's name, added to the task's own lines of /etc/hosts
	// when it is not empty and differs from Hostname.
	Name string
	// Addrs are the task's own addresses (may be empty). An IPv6 address
	// among them lets bridge mode keep IPv6 nameservers.
	Addrs []netip.Addr
	// Nameservers replace the host's nameservers (--dns, see
	// ParseNameserver).
	Nameservers []netip.Addr
	// Search replaces the host's search list (--dns-search, see
	// ParseSearchDomain); "." entries are dropped, so []string{"."} means no
	// search list.
	Search []string
	// Options replace the host's resolver options (--dns-option, see
	// ParseDNSOption).
	Options []string
	// ExtraHosts are added to /etc/hosts (--add-host, see ParseAddHost).
	ExtraHosts []HostEntry
	// Gateway is the address that "host-gateway" entries of ExtraHosts
	// stand for: the bridge's address. Without it such entries are an error.
	Gateway netip.Addr
	// HostResolvConf is the host's resolv.conf; empty means
	// /etc/resolv.conf. A missing file counts as an empty one.
	HostResolvConf string
	// SystemdResolvConf is systemd-resolved's list of upstream servers,
	// used in bridge mode when HostResolvConf names only loopback
	// nameservers; empty means /run/systemd/resolve/resolv.conf.
	SystemdResolvConf string
	// HostHosts is the host's hosts file, the base of host mode's
	// /etc/hosts; empty means /etc/hosts. A missing file counts as an empty
	// one.
	HostHosts string
}

// HostEntry is one --add-host entry: Name resolves to Addr, or to the
// bridge gateway (DNSConfig.Gateway) when HostGateway is set.
type HostEntry struct {
	Name        string
	Addr        netip.Addr
	HostGateway bool
}

// String returns the entry as "name:address" (or "name:host-gateway"), a
// form ParseAddHost reads back.
func (e HostEntry) String() string {
	if e.HostGateway {
		return e.Name + ":" + hostGateway
	}
	return e.Name + ":" + e.Addr.String()
}

// DNSFiles are the files WriteDNSFiles wrote, to be bind-mounted into the
// task.
type DNSFiles struct {
	// Hosts is for /etc/hosts.
	Hosts string
	// ResolvConf is for /etc/resolv.conf.
	ResolvConf string
	// Hostname is for /etc/hostname.
	Hostname string
	// Warnings are for the user: the default public nameservers had to be
	// used, or a --dns nameserver is unlikely to work.
	Warnings []string
}

// WriteDNSFiles writes the files hosts, resolv.conf and hostname for c into
// dir, which must exist, replacing any already there, and returns their
// absolute paths. It reads the host files c names (and no other); it checks
// all of c and reads everything before writing anything. If writing one of
// the files fails, the ones before it may have been replaced already.
func WriteDNSFiles(dir string, c DNSConfig) (DNSFiles, error) {
	if err := c.check(); err != nil {
		return DNSFiles{}, err
	}
	hostsData, err := c.hostsFile()
	if err != nil {
		return DNSFiles{}, err
	}
	src, from, err := c.loadResolvConf(readHostFile)
	if err != nil {
		return DNSFiles{}, err
	}
	resolvData, warnings := c.resolvConfFile(src, from)

	dir, err = filepath.Abs(dir)
	if err != nil {
		return DNSFiles{}, fmt.Errorf("network: dns files: %w", err)
	}
	files := DNSFiles{
		Hosts:      filepath.Join(dir, "hosts"),
		ResolvConf: filepath.Join(dir, "resolv.conf"),
		Hostname:   filepath.Join(dir, "hostname"),
		Warnings:   warnings,
	}
	for _, f := range []struct {
		path string
		data []byte
	}{
		{files.Hosts, hostsData},
		{files.ResolvConf, resolvData},
		{files.Hostname, []byte(c.Hostname + "\n")},
	} {
		if err := writeDNSFile(f.path, f.data); err != nil {
			return DNSFiles{}, err
		}
	}
	return files, nil
}

// ParseAddHost parses an --add-host value: "name:address" or
// "name=address", where the address is an IPv4 or IPv6 literal, optionally
// in brackets ("db:::1", "db:[::1]", "db=::1"), or "host-gateway" for the
// bridge gateway. The name must be a valid host name (RFC 1123).
func ParseAddHost(s string) (HostEntry, error) {
	bad := func(format string, args ...any) (HostEntry, error) {
		return HostEntry{}, fmt.Errorf("invalid --add-host %q: %s", s, fmt.Sprintf(format, args...))
	}
	name, addr, ok := strings.Cut(s, "=")
	if !ok {
		// Cut at the first colon: the rest may be an IPv6 address.
		name, addr, ok = strings.Cut(s, ":")
	}
	if !ok {
		return bad("want name:address or name=address")
	}
	if name == "" {
		return bad("no host name")
	}
	if err := checkDNSName(name); err != nil {
		return bad("host name %q: %v", name, err)
	}
	if addr == hostGateway {
		return HostEntry{Name: name, HostGateway: true}, nil
	}
	if len(addr) > 2 && addr[0] == '[' && addr[len(addr)-1] == ']' {
		addr = addr[1 : len(addr)-1]
	}
	if addr == "" {
		return bad("no address")
	}
	a, err := netip.ParseAddr(addr)
	if err != nil {
		return bad("%q is not an IP address (nor %q)", addr, hostGateway)
	}
	if a.Zone() != "" {
		return bad("address %q: zones are not supported", addr)
	}
	return HostEntry{Name: name, Addr: a.Unmap()}, nil
}

// ParseNameserver parses a --dns value: an IPv4 or IPv6 address literal,
// without a zone. Loopback addresses are accepted (a task may run its own
// resolver); the unspecified addresses are not.
func ParseNameserver(s string) (netip.Addr, error) {
	a, err := netip.ParseAddr(strings.TrimSpace(s))
	if err != nil {
		return netip.Addr{}, fmt.Errorf("invalid --dns %q: not an IP address", s)
	}
	if err := checkNameserver(a); err != nil {
		return netip.Addr{}, fmt.Errorf("invalid --dns %q: %w", s, err)
	}
	return a.Unmap(), nil
}

// ParseSearchDomain parses a --dns-search value: a domain name (RFC 1123
// labels; a trailing dot is dropped), or "." for no search list.
func ParseSearchDomain(s string) (string, error) {
	if s == "." {
		return s, nil
	}
	d := strings.TrimSuffix(s, ".")
	if d == "" {
		return "", fmt.Errorf("invalid --dns-search %q: empty domain", s)
	}
	if err := checkDNSName(d); err != nil {
		return "", fmt.Errorf("invalid --dns-search %q: %w", s, err)
	}
	return d, nil
}

// ParseDNSOption checks a --dns-option value such as "ndots:2" or "rotate":
// a non-empty word of printable ASCII without '#' or ';' (which start
// comments in resolv.conf). Whether the resolver knows the option is not
// checked; resolvers ignore options they don't know.
func ParseDNSOption(s string) (string, error) {
	if s == "" {
		return "", errors.New(`invalid --dns-option "": empty option`)
	}
	if !isResolvWord(s) {
		return "", fmt.Errorf("invalid --dns-option %q: want printable ASCII without spaces, '#' or ';'", s)
	}
	return s, nil
}

// check fills in c's defaults and checks the rest, so that the files can
// be rendered without errors.
func (c *DNSConfig) check() error {
	switch c.Mode {
	case "":
		c.Mode = DNSBridge
	case DNSBridge, DNSHost, DNSNone:
	default:
		return fmt.Errorf("network: dns: mode %q: want %s, %s or %s", c.Mode, DNSBridge, DNSHost, DNSNone)
	}
	if c.HostResolvConf == "" {
		c.HostResolvConf = defaultHostResolvConf
	}
	if c.SystemdResolvConf == "" {
		c.SystemdResolvConf = defaultSystemdResolvConf
	}
	if c.HostHosts == "" {
		c.HostHosts = defaultHostHosts
	}
	if c.Hostname == "" {
		return errors.New("network: dns: no host name")
	}
	if len(c.Hostname) > 64 || !isHostsWord(c.Hostname) {
		return fmt.Errorf("network: dns: host name %q: want at most 64 bytes of printable ASCII without spaces or '#'", c.Hostname)
	}
	if c.Name != "" && !isHostsWord(c.Name) {
		return fmt.Errorf("network: dns: name %q: want printable ASCII without spaces or '#'", c.Name)
	}
	c.Addrs = unmapAll(c.Addrs)
	for _, a := range c.Addrs {
		if !a.IsValid() {
			return errors.New("network: dns: invalid task address")
		}
	}
	c.Nameservers = unmapAll(c.Nameservers)
	for _, a := range c.Nameservers {
		if err := checkNameserver(a); err != nil {
			return fmt.Errorf("network: dns: nameserver %s: %w", a, err)
		}
	}
	for _, s := range c.Search {
		if _, err := ParseSearchDomain(s); err != nil {
			return fmt.Errorf("network: %w", err)
		}
	}
	for _, o := range c.Options {
		if _, err := ParseDNSOption(o); err != nil {
			return fmt.Errorf("network: %w", err)
		}
	}
	c.Gateway = c.Gateway.Unmap()
	for _, e := range c.ExtraHosts {
		if err := checkDNSName(e.Name); err != nil {
			return fmt.Errorf("network: invalid --add-host %q: host name: %w", e.String(), err)
		}
		switch {
		case e.HostGateway && !c.Gateway.IsValid():
			return fmt.Errorf("network: invalid --add-host %q: no gateway to stand for (the task is not on a bridge network)", e.String())
		case !e.HostGateway && !e.Addr.IsValid():
			return fmt.Errorf("network: invalid --add-host for %q: no address", e.Name)
		}
	}
	return nil
}

func unmapAll(addrs []netip.Addr) []netip.Addr {
	if len(addrs) == 0 {
		return nil
	}
	out := make([]netip.Addr, len(addrs))
	for i, a := range addrs {
		out[i] = a.Unmap()
	}
	return out
}

// checkNameserver rejects addresses a resolver can't be told to use.
func checkNameserver(a netip.Addr) error {
	switch {
	case !a.IsValid():
		return errors.New("not an IP address")
	case a.Zone() != "":
		return errors.New("zones are not supported")
	case a.IsUnspecified():
		return errors.New("the unspecified address is not a nameserver")
	}
	return nil
}

// checkDNSName checks a host or domain name: dot-separated labels of
// letters, digits and hyphens, not starting or ending with a hyphen, at most
// 63 bytes each and 253 in all (RFC 1123 §2.1).
func checkDNSName(s string) error {
	if s == "" {
		return errors.New("empty name")
	}
	if len(s) > 253 {
		return errors.New("longer than 253 characters")
	}
	for label := range strings.SplitSeq(s, ".") {
		if label == "" {
			return errors.New("empty label")
		}
		if len(label) > 63 {
			return fmt.Errorf("label %q is longer than 63 characters", label)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("label %q starts or ends with a hyphen", label)
		}
		for i := 0; i < len(label); i++ {
			b := label[i]
			if (b < 'a' || b > 'z') && (b < 'A' || b > 'Z') && (b < '0' || b > '9') && b != '-' {
				return fmt.Errorf("invalid character %q (want letters, digits, '-' and '.')", b)
			}
		}
	}
	return nil
}

// isHostsWord reports whether s can be a name in a hosts file: printable
// ASCII, no spaces, no comment character.
func isHostsWord(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] >= 0x7f || s[i] == '#' {
			return false
		}
	}
	return s != ""
}

// isResolvWord reports whether s can be a word of a resolv.conf line:
// printable ASCII, no spaces, no comment characters.
func isResolvWord(s string) bool {
	return isHostsWord(s) && !strings.ContainsRune(s, ';')
}

// hostsFile renders /etc/hosts; c has been checked.
func (c *DNSConfig) hostsFile() ([]byte, error) {
	var b bytes.Buffer
	if c.Mode == DNSHost {
		host, _, err := readHostFile(c.HostHosts, maxHostsSize)
		if err != nil {
			return nil, err
		}
		b.Write(host)
		if len(host) > 0 && host[len(host)-1] != '\n' {
			b.WriteByte('\n')
		}
	} else {
		b.WriteString("127.0.0.1\tlocalhost\n" +
			"::1\tlocalhost ip6-localhost ip6-loopback\n" +
			"fe00::0\tip6-localnet\n" +
			"ff00::0\tip6-mcastprefix\n" +
			"ff02::1\tip6-allnodes\n" +
			"ff02::2\tip6-allrouters\n")
	}
	for _, e := range c.ExtraHosts {
		a := e.Addr.Unmap()
		if e.HostGateway {
			a = c.Gateway
		}
		fmt.Fprintf(&b, "%s\t%s\n", a, e.Name)
	}
	if c.Mode != DNSHost {
		names := c.Hostname
		if c.Name != "" && c.Name != c.Hostname {
			names += " " + c.Name
		}
		for _, a := range c.Addrs {
			fmt.Fprintf(&b, "%s\t%s\n", a, names)
		}
	}
	return b.Bytes(), nil
}

// loadResolvConf reads, with read (readHostFile but in tests), the host's
// resolv.conf, or in bridge mode systemd-resolved's file instead when the
// host's names only loopback nameservers and systemd-resolved's exists. It
// returns the content and the path it came from.
func (c *DNSConfig) loadResolvConf(read func(path string, limit int64) ([]byte, bool, error)) ([]byte, string, error) {
	data, _, err := read(c.HostResolvConf, maxResolvConfSize)
	if err != nil {
		return nil, "", err
	}
	if c.Mode != DNSBridge || !parseResolvConf(data).onlyLoopback() {
		return data, c.HostResolvConf, nil
	}
	sd, ok, err := read(c.SystemdResolvConf, maxResolvConfSize)
	if err != nil {
		return nil, "", err
	}
	if !ok {
		return data, c.HostResolvConf, nil
	}
	return sd, c.SystemdResolvConf, nil
}

// Docker's fallback nameservers (Google Public DNS).
var (
	defaultNameservers4 = []netip.Addr{netip.MustParseAddr("8.8.8.8"), netip.MustParseAddr("8.8.4.4")}
	defaultNameservers6 = []netip.Addr{netip.MustParseAddr("2001:4860:4860::8888"), netip.MustParseAddr("2001:4860:4860::8844")}
)

// resolvConfFile renders /etc/resolv.conf from the content src of the host
// file at path from (as loadResolvConf chose it) and returns it with the
// warnings for the user. c has been checked. It is a pure function of its
// arguments and never fails: any bytes make some file.
func (c *DNSConfig) resolvConfFile(src []byte, from string) ([]byte, []string) {
	overridden := len(c.Nameservers) > 0 || len(c.Search) > 0 || len(c.Options) > 0
	if c.Mode != DNSBridge && !overridden {
		return src, nil
	}
	rc := parseResolvConf(src)
	var warnings []string
	if len(c.Nameservers) > 0 {
		rc.nameservers = c.Nameservers
		if c.Mode == DNSBridge {
			for _, a := range c.Nameservers {
				if a.IsLoopback() {
					warnings = append(warnings, fmt.Sprintf("--dns %s is a loopback address: it works only if the task runs its own resolver", a))
				}
			}
		}
	}
	if len(c.Search) > 0 {
		rc.searchKey, rc.search = "", nil
		for _, s := range c.Search {
			if s == "." {
				continue
			}
			rc.searchKey = "search"
			rc.search = append(rc.search, strings.TrimSuffix(s, "."))
		}
	}
	if len(c.Options) > 0 {
		rc.options = c.Options
	}
	comment := fmt.Sprintf("# Generated by berth from %q.\n", from)
	if c.Mode == DNSBridge && len(c.Nameservers) == 0 {
		v6 := c.hasIPv6()
		var kept []netip.Addr
		for _, a := range rc.nameservers {
			if usableFromBridge(a, v6) {
				kept = append(kept, a)
			}
		}
		rc.nameservers = kept
		if len(kept) == 0 {
			rc.nameservers = append([]netip.Addr(nil), defaultNameservers4...)
			if v6 {
				rc.nameservers = append(rc.nameservers, defaultNameservers6...)
			}
			list := joinAddrs(rc.nameservers, ", ")
			warnings = append(warnings, fmt.Sprintf("no nameserver in %s is reachable from the task's network namespace (loopback ones are not): using the default public nameservers %s", from, list))
			comment += "# No usable nameserver there: using the defaults.\n"
		}
	}
	return rc.render(comment), warnings
}

// hasIPv6 reports whether the task has an IPv6 address that can reach
// beyond its link.
func (c *DNSConfig) hasIPv6() bool {
	for _, a := range c.Addrs {
		if a.Is6() && !a.IsLoopback() && !a.IsLinkLocalUnicast() {
			return true
		}
	}
	return false
}

// usableFromBridge reports whether a nameserver of the host can be reached
// from a task on a bridge: not the loopback or unspecified address (they
// mean the task's own namespace there), not scoped to a host interface, and
// not IPv6 unless the task has IPv6.
func usableFromBridge(a netip.Addr, v6 bool) bool {
	a = a.Unmap()
	return a.IsValid() && !a.IsLoopback() && !a.IsUnspecified() && a.Zone() == "" && (v6 || a.Is4())
}

func joinAddrs(addrs []netip.Addr, sep string) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, sep)
}

// resolvConf is the content of a resolv.conf file that matters.
type resolvConf struct {
	nameservers []netip.Addr
	// searchKey is "search" or "domain", whichever came last (the last one
	// wins), or "" for neither; search is its list.
	searchKey string
	search    []string
	// options are the words of all options lines.
	options []string
	// other are the other directive lines (sortlist and the like), their
	// words joined by single spaces.
	other []string
}

// resolvKeywords are the directives parseResolvConf understands, and those
// (in any case) it doesn't keep as other lines.
var resolvKeywords = []string{"nameserver", "search", "domain", "options"}

// parseResolvConf parses resolv.conf content. It accepts any bytes: lines
// end at '\n'; words are separated by spaces, tabs, '\r', '\v' and '\f';
// comments run from '#' or ';' to the end of the line; unparseable
// nameserver lines and words that are not printable ASCII are dropped, as
// are lines whose directive differs from a known one only in case (the C
// library ignores those).
func parseResolvConf(data []byte) resolvConf {
	var rc resolvConf
	for len(data) > 0 {
		var line []byte
		line, data, _ = bytes.Cut(data, []byte{'\n'})
		if i := bytes.IndexAny(line, "#;"); i >= 0 {
			line = line[:i]
		}
		words := strings.FieldsFunc(string(line), func(r rune) bool {
			return r == ' ' || r == '\t' || r == '\r' || r == '\v' || r == '\f'
		})
		if len(words) == 0 {
			continue
		}
		args := printableWords(words[1:])
		switch words[0] {
		case "nameserver":
			if len(words) < 2 {
				continue
			}
			if a, err := netip.ParseAddr(words[1]); err == nil {
				rc.nameservers = append(rc.nameservers, a.Unmap())
			}
		case "search":
			rc.searchKey, rc.search = "search", args
		case "domain":
			rc.searchKey, rc.search = "domain", args
			if len(args) > 1 {
				rc.search = args[:1]
			}
		case "options":
			rc.options = append(rc.options, args...)
		default:
			if isResolvKeyword(words[0]) || len(args) != len(words)-1 || !isResolvWord(words[0]) {
				continue
			}
			rc.other = append(rc.other, strings.Join(words, " "))
		}
	}
	return rc
}

func isResolvKeyword(w string) bool {
	for _, k := range resolvKeywords {
		if strings.EqualFold(w, k) {
			return true
		}
	}
	return false
}

// printableWords returns the words that are printable ASCII.
func printableWords(words []string) []string {
	var out []string
	for _, w := range words {
		if isResolvWord(w) {
			out = append(out, w)
		}
	}
	return out
}

// onlyLoopback reports whether rc names nameservers and all are loopback
// addresses: the systemd-resolved stub (127.0.0.53, 127.0.0.54) and the
// like.
func (rc resolvConf) onlyLoopback() bool {
	for _, a := range rc.nameservers {
		if !a.Unmap().IsLoopback() {
			return false
		}
	}
	return len(rc.nameservers) > 0
}

// render writes rc as a resolv.conf file after the comment lines given.
func (rc resolvConf) render(comment string) []byte {
	var b bytes.Buffer
	b.WriteString(comment)
	for _, a := range rc.nameservers {
		fmt.Fprintf(&b, "nameserver %s\n", a)
	}
	if rc.searchKey != "" && len(rc.search) > 0 {
		fmt.Fprintf(&b, "%s %s\n", rc.searchKey, strings.Join(rc.search, " "))
	}
	if len(rc.options) > 0 {
		fmt.Fprintf(&b, "options %s\n", strings.Join(rc.options, " "))
	}
	for _, l := range rc.other {
		b.WriteString(l)
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// readHostFile reads a host file of at most limit bytes. A missing file
// reads as empty, with ok false.
func readHostFile(path string, limit int64) (data []byte, ok bool, err error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("network: dns: %w", err)
	}
	defer func() { _ = f.Close() }()
	data, err = io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, false, fmt.Errorf("network: dns: read %s: %w", path, err)
	}
	if int64(len(data)) > limit {
		return nil, false, fmt.Errorf("network: dns: %s is larger than %d bytes", path, limit)
	}
	return data, true, nil
}

// writeDNSFile replaces the file at path with data, mode 0644, atomically:
// a temporary file in the same directory, renamed over path; not fsynced
// (see the comment at the top).
func writeDNSFile(path string, data []byte) error {
	dir, base := filepath.Split(path)
	f, err := os.CreateTemp(dir, "."+base+".tmp-*")
	if err != nil {
		return fmt.Errorf("network: dns: write %s: %w", path, err)
	}
	tmp := f.Name()
	// Chmod, not the mode at creation: the umask must not apply, since
	// the task's users (any uid) read the files.
	err = f.Chmod(0o644)
	if err == nil {
		_, err = f.Write(data)
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("network: dns: write %s: %w", path, err)
	}
	return nil
}
