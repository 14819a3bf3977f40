package methods

// initGuest sets the real system calls (tests replace them afterwards)
// and takes over a freeze left by a previous agent.
func (s *Service) initGuest() {
	s.guest.init()
	s.recoverFreeze()
}

// init sets the real system calls.
func (g *guestState) init() {
	g.fsIoctl = defaultFsIoctl
	g.setClock = defaultSetClock
	g.readRTC = defaultReadRTC
	g.writeRTC = defaultWriteRTC
}
