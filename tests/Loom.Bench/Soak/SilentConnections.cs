using System.Diagnostics;
using System.Net;
using System.Net.Sockets;

namespace Loom.Bench.Soak;

/// <summary>
/// Offender 3: TCP connections to the gRPC port that send nothing, each reopened as soon as the
/// bridge closes it. Against a loopback bridge they come from 127.0.0.2, as a separate client host
/// would, so a per-address limit on them does not also count the healthy agents on 127.0.0.1.
/// </summary>
internal sealed class SilentConnections(Uri url, int count, Tally tally)
{
    public const string Name = "silent_tcp";
    private static readonly TimeSpan ConnectTimeout = TimeSpan.FromSeconds(5);
    private long _open;
    private long _closed;
    private long _heldTicks;

    public long Open => Interlocked.Read(ref _open);

    /// <summary>Mean time the bridge let a silent connection stay open, in seconds (NaN before the first close).</summary>
    public double MeanHeldSeconds
    {
        get
        {
            var closed = Interlocked.Read(ref _closed);
            return closed == 0 ? double.NaN : Interlocked.Read(ref _heldTicks) / (double)Stopwatch.Frequency / closed;
        }
    }

    public async Task RunAsync(CancellationToken stop)
    {
        IPAddress[] addresses;
        try
        {
            addresses = await Dns.GetHostAddressesAsync(url.Host, stop);
        }
        catch (SocketException ex)
        {
            tally.Add(Name + "/resolve_" + ex.SocketErrorCode);
            return;
        }

        var address = addresses.FirstOrDefault(a => a.AddressFamily == AddressFamily.InterNetwork) ?? addresses[0];
        var target = new IPEndPoint(address, url.Port);
        var from = address.Equals(IPAddress.Loopback) ? IPAddress.Parse("127.0.0.2") : null;
        await Task.WhenAll(Enumerable.Range(0, count).Select(i => Task.Run(() => HoldAsync(target, from, i, stop), CancellationToken.None)));
    }

    private async Task HoldAsync(IPEndPoint target, IPAddress? from, int index, CancellationToken stop)
    {
        // Spread the first connects over a second, like clients arriving, not one burst.
        if (!await Pace.DelayAsync(TimeSpan.FromMilliseconds(index * 1000.0 / Math.Max(1, count)), stop))
        {
            return;
        }

        var buffer = new byte[64];
        while (!stop.IsCancellationRequested)
        {
            using var socket = new Socket(target.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            try
            {
                if (from is not null)
                {
                    socket.Bind(new IPEndPoint(from, 0));
                }

                using (var connectBound = CancellationTokenSource.CreateLinkedTokenSource(stop))
                {
                    connectBound.CancelAfter(ConnectTimeout);
                    await socket.ConnectAsync(target, connectBound.Token);
                }

                tally.Add(Name + "/opened");
                Interlocked.Increment(ref _open);
                var opened = Stopwatch.GetTimestamp();
                try
                {
                    // Sends nothing; waits for the bridge to close it (a read of 0 bytes, or a reset).
                    while (await socket.ReceiveAsync(buffer, SocketFlags.None, stop) > 0)
                    {
                    }

                    tally.Add(Name + "/closed_by_bridge");
                }
                catch (SocketException ex)
                {
                    tally.Add(Name + "/closed_by_bridge_" + ex.SocketErrorCode);
                }
                finally
                {
                    Interlocked.Decrement(ref _open);
                    if (!stop.IsCancellationRequested)
                    {
                        Interlocked.Increment(ref _closed);
                        Interlocked.Add(ref _heldTicks, Stopwatch.GetTimestamp() - opened);
                    }
                }
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
            catch (Exception ex)
            {
                tally.Add(Name + "/connect_" + (ex is OperationCanceledException ? "client_timeout" : Outcome.Of(ex)));
                if (!await Pace.DelayAsync(TimeSpan.FromSeconds(1), stop))
                {
                    return;
                }
            }

            if (!await Pace.DelayAsync(TimeSpan.FromMilliseconds(100 + Random.Shared.Next(400)), stop))
            {
                return;
            }
        }
    }
}
