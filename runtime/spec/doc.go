// Package spec turns an image's config plus `berth run` options into an OCI
// runtime-spec configuration (config.json), following Docker's rules so that
// a container behaves under berth as it does under `docker run`.
//
// The package is pure translation: it reads the container's rootfs (to
// resolve users through the image's own /etc/passwd and /etc/group and to
// check that the command exists) and a few facts about the host (the
// capabilities and rlimits berth holds, its devices for --privileged), and
// writes nothing. It imports neither libcontainer nor any registry client:
// package runtime converts the result with libcontainer's specconv, and the
// service layer supplies the image config as plain values.
//
// # What Generate does, as Docker does it
//
//   - Command: --entrypoint replaces the image's ENTRYPOINT and drops its CMD
//     unless CMD arguments are given; CMD arguments replace the image's CMD;
//     `--entrypoint ""` clears the entrypoint. An empty result is ErrNoCommand.
//     With --init the process becomes [InitPathInContainer, "--", args...].
//   - Environment: PATH (default), HOSTNAME and, with a TTY, TERM=xterm, then
//     the image's ENV, then --env-file lines, then -e values; a later value
//     of a key replaces an earlier one in place, and a bare `-e KEY` takes the
//     caller's value or, when the caller has none, removes KEY. HOME comes
//     from the user's passwd entry when no layer set it.
//   - User: -u replaces the image's USER; name, uid, name:group, uid:gid are
//     resolved in the image's /etc/passwd and /etc/group (numeric ids need
//     no entry); supplementary groups come from /etc/group.
//   - Security: Docker's default capabilities (bounding, effective and
//     permitted; never inheritable or ambient), --cap-add/--cap-drop with
//     ALL, Docker's seccomp profile (github.com/moby/profiles/seccomp,
//     adapted to the capabilities), Docker's masked and read-only /proc and
//     /sys paths and device rules. --privileged grants every capability berth
//     holds, every host device, and no seccomp, masks or read-only paths.
//   - Mounts: Docker's /proc, /dev, /dev/pts, /dev/shm (64 MiB), /dev/mqueue,
//     /sys and cgroup mounts; --tmpfs (noexec,nosuid,nodev unless overridden);
//     volumes as recursive private bind mounts; Options.ExtraMounts for the
//     files the networking code provides (/etc/hosts, /etc/resolv.conf,
//     /etc/hostname). A user mount replaces a default one at the same place.
//   - Resources: memory limit, reservation and swap (twice the limit unless
//     given), CPU quota over a 100 ms period from --cpus, CPU shares, the
//     pids limit, rlimits from --ulimit. No default rlimits are set, so the
//     container inherits berth's own, which never exceed the host's.
//   - Namespaces: mount, network (new, Options.NetNSPath, or none with
//     Options.HostNetwork), uts, pid, ipc and cgroup.
//
// # Where the rest lives
//
// The caller checks what needs the state root or the host's filesystem
// beyond the rootfs: that bind-mount sources exist ("volume source /nope
// does not exist") and where named volumes live, name clashes, the cgroup
// path (pass WithCgroupsPath), and the console size.
package spec
