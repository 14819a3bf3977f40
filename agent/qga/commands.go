//go:build !windows

package qga

// The registry: every command the dialect answers, as groups. guest-info
// lists them in this order; a schema command that no group registers is
// answered as a disabled command is in qemu-ga.
//
// To add a group: write, in a file of its own (e.g. users.go), a method of
// *Dialect returning its []Command, each with the schema's name (qapi.Cmd*)
// and a handler made with Typed or NoArgs over the qapi types, then add one
// line below. New runs this list once and panics on a name that is not in
// the schema or is registered twice (a test builds a Dialect).
func (d *Dialect) groups() [][]Command {
	// While the agent holds file systems frozen, only the core commands
	// and fsfreeze status/thaw run (qemu-ga's freeze allow-list): the
	// others are refused (unlessFrozen), so that no command can block on a
	// frozen file system ahead of the thaw in the ordered queue.
	return [][]Command{
		d.coreCommands(),
		d.fsfreezeCommands(), // refuses freeze and fstrim itself
		d.unlessFrozen(d.systemCommands()),
		d.unlessFrozen(d.networkCommands()),
		d.unlessFrozen(d.execCommands()),
		d.unlessFrozen(d.fileCommands()),
		d.unlessFrozen(d.powerCommands()),
		d.unlessFrozen(d.guestInfoCommands()),
		d.unlessFrozen(d.diskCommands()),
		d.unlessFrozen(d.accountCommands()),
	}
}
