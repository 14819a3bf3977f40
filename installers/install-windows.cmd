@echo off
rem Installs (or upgrades) kvmmanager-agent as the Windows service
rem "kvmmanager-agent" from this disc. Run as Administrator, from cmd.exe or
rem PowerShell (no execution policy change needed). Running it again changes
rem nothing; an upgrade keeps %ProgramData%\kvmmanager-agent\config.json.
setlocal EnableExtensions
set "SRC=%~dp0"
set "DEST=%ProgramFiles%\KVM Manager Agent"
set "EXE=%DEST%\kvmmanager-agent.exe"

net session >nul 2>&1
if errorlevel 1 (
    echo install-windows: this must run as Administrator: open "Command Prompt" with
    echo "Run as administrator" and run %~f0 again.
    exit /b 1
)

rem The machine's architecture, also from a 32-bit or emulated prompt.
set "ARCH=%PROCESSOR_ARCHITECTURE%"
if defined PROCESSOR_ARCHITEW6432 set "ARCH=%PROCESSOR_ARCHITEW6432%"
set "DIR="
if /i "%ARCH%"=="AMD64" set "DIR=windows-amd64"
if /i "%ARCH%"=="ARM64" set "DIR=windows-arm64"
if not defined DIR (
    echo install-windows: unsupported architecture %ARCH% ^(want AMD64 or ARM64^)
    exit /b 1
)
set "BIN=%SRC%%DIR%\kvmmanager-agent.exe"
if not exist "%BIN%" (
    echo install-windows: %BIN% is missing from the disc
    exit /b 1
)

rem An upgrade: stop the running service so that its file can be replaced.
if exist "%EXE%" "%EXE%" service stop >nul 2>&1

if not exist "%DEST%" mkdir "%DEST%"
if errorlevel 1 (
    echo install-windows: cannot create %DEST%
    exit /b 1
)
copy /y "%BIN%" "%EXE%" >nul
if errorlevel 1 (
    echo install-windows: cannot copy %BIN% to %EXE%
    exit /b 1
)
echo install-windows: %EXE% ^(%ARCH%^)

rem Registers the service (automatic, delayed start; restarted on failure),
rem the Event Log source, and writes the default config only if none exists.
"%EXE%" service install
if errorlevel 1 exit /b 1
"%EXE%" service start
if errorlevel 1 exit /b 1

rem The port needs the virtio-win vioserial driver and the VM's channel.
sc query vioser >nul 2>&1
if errorlevel 1 (
    echo install-windows: WARNING: the virtio-win vioserial driver ^(service "vioser"^) is not installed.
    echo   Install it from the virtio-win ISO: https://github.com/virtio-win/virtio-win-pkg-scripts
    echo   ^(virtio-win-guest-tools.exe, or vioserial\^<version^>\^<arch^>\vioser.inf^).
)
"%EXE%" service check-port
if errorlevel 1 (
    echo install-windows: WARNING: the VM has no org.kvmmanager.agent.0 port. Add to its libvirt XML, in ^<devices^>,
    echo   ^<channel type='unix'^>^<source mode='bind'/^>^<target type='virtio' name='org.kvmmanager.agent.0'/^>^</channel^>
    echo   then shut the VM down and start it. The service waits for the port meanwhile.
)
echo install-windows: done. Logs: Event Viewer, Windows Logs, Application, source kvmmanager-agent.
exit /b 0
