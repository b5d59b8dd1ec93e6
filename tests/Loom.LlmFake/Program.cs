using Loom.LlmFake;

// Usage: dotnet Loom.LlmFake.dll — serves on 127.0.0.1 (a free port), prints
// "FAKE_LLM_URL=http://127.0.0.1:PORT" and runs until stdin closes or the process is signalled.
await using var server = new FakeLlmServer();
await server.StartAsync();
Console.WriteLine($"FAKE_LLM_URL={server.BaseUrl}");
Console.Out.Flush();
var stdinClosed = Task.Run(() =>
{
    while (Console.In.ReadLine() is not null)
    {
        // keep reading until EOF
    }
});
var signalled = new TaskCompletionSource();
using var sigterm = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGTERM, c => { c.Cancel = true; signalled.TrySetResult(); });
using var sigint = System.Runtime.InteropServices.PosixSignalRegistration.Create(System.Runtime.InteropServices.PosixSignal.SIGINT, c => { c.Cancel = true; signalled.TrySetResult(); });
await Task.WhenAny(stdinClosed, signalled.Task);
