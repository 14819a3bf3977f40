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
	return [][]Command{
		d.coreCommands(),
		d.systemCommands(),
		d.networkCommands(),
		d.execCommands(),
		d.fileCommands(),
		d.powerCommands(),
		d.guestInfoCommands(),
		d.diskCommands(),
		d.fsfreezeCommands(),
		d.accountCommands(),
	}
}
