package methods

// init sets the real system calls; tests replace them afterwards.
func (g *guestState) init() {
	g.fsIoctl = defaultFsIoctl
	g.setClock = defaultSetClock
	g.readRTC = defaultReadRTC
	g.writeRTC = defaultWriteRTC
}
