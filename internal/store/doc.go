// Package store keeps berth's state on disk as one file per object, safe to
// share between processes (the CLI, the daemon and the per-task monitors) and
// safe against crashes.
//
// # Layout
//
// A [Store] is rooted at a directory (the state root, /var/lib/berth). Objects
// are addressed by keys: slash-separated relative paths such as
// "tasks/abc/state.json". Every key maps to exactly one file, root/key, holding
// the object as JSON. Keys are checked by [ValidateKey]: no empty, "." or ".."
// components, nothing absolute, no backslash or NUL, and no component starting
// with a dot, so a key can never name a file outside the root, and names
// starting with a dot are free for the store's own use: temporary files
// (".<name>.tmp-<random>") and lock files (under root/.locks/).
//
// # Guarantees
//
// Atomic replace. Every write ([Store.Put], [WriteFileAtomic]) goes to a new
// temporary file in the destination's directory, created with O_EXCL, which is
// written in full, fsynced, and then renamed over the destination. rename(2)
// is atomic, so a reader (in this process or any other) sees either the old
// file or the new one, never a mix and never a partial file.
//
// Durability after return. When a write returns nil, the file's data, and the
// directory entry naming it, have been fsynced: the directory is fsynced after
// the rename, and every directory the store creates is fsynced into its
// parent. [Store.Delete] fsyncs the directory after removing the entry.
//
// Killed writers (kill -9, OOM, panic). The destination still holds the
// previous complete version (or is still absent). At worst a temporary file is
// left behind; it is invisible to [Store.List] and [Store.Get], and
// [Store.CleanTemp] (run best-effort by [Open]) removes it once it is older than
// [TempMaxAge]. Locks are flock(2) locks, which the kernel drops when the
// holder dies, so a killed process never leaves a key locked.
//
// Power loss or kernel crash. A write that returned nil survives. A write that
// was in flight either happened completely or not at all, as far as the
// filesystem's rename and fsync guarantees go (ext4, xfs and btrfs in their
// default modes): the file is the old version or the new one, and a
// temporary file may be left over for CleanTemp.
//
// What the store does not do: it does not make a change to several objects
// atomic (callers order their writes so an interrupted sequence can be
// completed or rolled back), and it does not guard against other programs
// placing symlinks inside the root.
//
// # Locking
//
// [Store.Lock] takes an exclusive flock(2) lock named like a key, on a lock
// file under root/.locks/ that is never removed (removing a lock file races
// with processes waiting on it). Every call opens the lock file anew, so locks
// exclude each other across processes and across goroutines of one process
// alike, and a goroutine that takes the same lock twice deadlocks. Locks are
// advisory: [Store.Put] and [Store.Get] do not take them. [Store.Update] does a
// locked read-modify-write of one object.
package store
