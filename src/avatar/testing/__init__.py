"""Fakes and harnesses shared by the tests and the benchmarks: scripted engines, a fake OpenAI
server, servers in threads or child processes, the crash-safety harness."""
