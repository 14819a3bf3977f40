@echo off
rem Removes the kvmmanager-agent service and its files. The configuration
rem (%ProgramData%\kvmmanager-agent) is kept unless /purge is given.
setlocal EnableExtensions
set "DEST=%ProgramFiles%\KVM Manager Agent"
set "EXE=%DEST%\kvmmanager-agent.exe"
set "DATA=%ProgramData%\kvmmanager-agent"
set "PURGE="
if /i "%~1"=="/purge" set "PURGE=1"
if not "%~1"=="" if not defined PURGE (
    echo usage: uninstall-windows.cmd [/purge]
    exit /b 2
)

net session >nul 2>&1
if errorlevel 1 (
    echo uninstall-windows: this must run as Administrator: open "Command Prompt" with
    echo "Run as administrator" and run %~f0 again.
    exit /b 1
)

if exist "%EXE%" (
    "%EXE%" service uninstall
    if errorlevel 1 exit /b 1
) else (
    sc query kvmmanager-agent >nul 2>&1
    if not errorlevel 1 (
        sc stop kvmmanager-agent >nul 2>&1
        sc delete kvmmanager-agent
    )
)
if exist "%DEST%" rmdir /s /q "%DEST%"
if exist "%DEST%" (
    echo uninstall-windows: could not remove %DEST%
    exit /b 1
)
if defined PURGE (
    if exist "%DATA%" rmdir /s /q "%DATA%"
    echo uninstall-windows: removed, with the configuration
) else (
    echo uninstall-windows: removed; the configuration in %DATA% is kept ^(/purge removes it^)
)
exit /b 0
