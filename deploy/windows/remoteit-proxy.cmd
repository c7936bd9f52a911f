@echo off
rem remoteit-proxy at logon, run by Task Scheduler: serve, its log appended to a file.
rem Install: deploy\windows\README.md. Installed in a venv? Change the path to its
rem .venv\Scripts\remoteit-proxy.exe.
"%USERPROFILE%\.local\bin\remoteit-proxy.exe" serve >> "%LOCALAPPDATA%\remoteit-proxy\remoteit-proxy.log" 2>&1
