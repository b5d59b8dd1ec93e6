using System.Diagnostics;
using System.Threading.Channels;
using Loom.Core;
using Microsoft.Extensions.AI;
using Microsoft.Extensions.Logging;

namespace Loom.Llm.Internal;

/// <summary>A text's embedding and its share of the batch's tokens.</summary>
internal readonly record struct EmbedResult(float[] Vector, long Tokens);

/// <summary>
/// Micro-batching of one embedding model: texts queued by any caller within
/// <see cref="LlmOptions.EmbedBatchWindow"/> go upstream together (up to
/// <see cref="LlmOptions.EmbedMaxBatch"/>, identical texts once), with retries. The queue is
/// bounded (<see cref="LlmOptions.EmbedMaxQueued"/>; RESOURCE_EXHAUSTED past it).
/// </summary>
internal sealed class EmbedBatcher : IAsyncDisposable
{
    private readonly LlmModelOptions _model;
    private readonly ProviderClient _provider;
    private readonly LlmOptions _options;
    private readonly LlmMetrics _metrics;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private readonly CancellationToken _stop;
    private readonly Channel<Item> _queue;
    private readonly Task _loop;

    public EmbedBatcher(LlmModelOptions model, ProviderClient provider, LlmOptions options, LlmMetrics metrics, TimeProvider time, ILogger logger, CancellationToken stop)
    {
        _model = model;
        _provider = provider;
        _options = options;
        _metrics = metrics;
        _time = time;
        _logger = logger;
        _stop = stop;
        _queue = Channel.CreateBounded<Item>(new BoundedChannelOptions(options.EmbedMaxQueued) { SingleReader = true, FullMode = BoundedChannelFullMode.Wait });
        _loop = Task.Run(RunAsync, CancellationToken.None);
    }

    public Task<EmbedResult> Enqueue(string text)
    {
        var item = new Item(text, new TaskCompletionSource<EmbedResult>(TaskCreationOptions.RunContinuationsAsynchronously));
        if (!_queue.Writer.TryWrite(item))
        {
            throw new ResourceExhaustedException($"The embedding queue of '{_model.Name}' is full ({_options.EmbedMaxQueued} texts waiting); retry later.");
        }

        return item.Done.Task;
    }

    private async Task RunAsync()
    {
        var reader = _queue.Reader;
        try
        {
            while (await reader.WaitToReadAsync(_stop).ConfigureAwait(false))
            {
                var batch = new List<Item>();
                var until = _time.GetTimestamp();
                while (batch.Count < _options.EmbedMaxBatch)
                {
                    if (reader.TryRead(out var item))
                    {
                        batch.Add(item);
                        continue;
                    }

                    var left = _options.EmbedBatchWindow - _time.GetElapsedTime(until);
                    if (left <= TimeSpan.Zero)
                    {
                        break;
                    }

                    using var wait = CancellationTokenSource.CreateLinkedTokenSource(_stop);
                    wait.CancelAfter(left);
                    try
                    {
                        await reader.WaitToReadAsync(wait.Token).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException) when (!_stop.IsCancellationRequested)
                    {
                        break;
                    }
                }

                if (batch.Count > 0)
                {
                    _ = SendAsync(batch); // batches of one model run concurrently, bounded by the provider's max_concurrency
                }
            }
        }
        catch (OperationCanceledException)
        {
            // stopping
        }

        while (reader.TryRead(out var left))
        {
            left.Done.TrySetException(new LoomException(Loom.Protocol.V1.ErrorCode.Unavailable, "The bridge is shutting down."));
        }
    }

    private async Task SendAsync(List<Item> batch)
    {
        var distinct = batch.Select(i => i.Text).Distinct(StringComparer.Ordinal).ToList();
        _metrics.EmbedBatch.Record(distinct.Count, new KeyValuePair<string, object?>("model", _model.Name));
        var failures = new List<string>();
        for (var attempt = 1; attempt <= _options.MaxAttempts; attempt++)
        {
            var started = _time.GetTimestamp();
            var slot = false;
            using var activity = LoomTelemetry.Source.StartActivity($"embeddings {_model.UpstreamId}", ActivityKind.Client);
            activity?.SetTag("gen_ai.operation.name", "embeddings");
            activity?.SetTag("gen_ai.request.model", _model.UpstreamId);
            activity?.SetTag("loom.llm.batch_size", distinct.Count);
            try
            {
                await _provider.Slots.WaitAsync(_stop).ConfigureAwait(false);
                slot = true;
                using var timeout = CancellationTokenSource.CreateLinkedTokenSource(_stop);
                timeout.CancelAfter(_provider.Options.Timeout);
                var result = await _provider.Embed(_model.UpstreamId).GenerateAsync(distinct, null, timeout.Token).ConfigureAwait(false);
                if (result.Count != distinct.Count)
                {
                    throw new InvalidOperationException($"The provider returned {result.Count} embeddings for {distinct.Count} texts.");
                }

                var tokens = result.Usage?.InputTokenCount ?? 0;
                var tag = new KeyValuePair<string, object?>("model", _model.Name);
                _metrics.Duration.Record(_time.GetElapsedTime(started).TotalSeconds, tag);
                _metrics.Upstream.Add(1, tag, new KeyValuePair<string, object?>("outcome", "ok"));
                _metrics.Tokens.Add(tokens, tag, new KeyValuePair<string, object?>("direction", "input"));
                _metrics.Cost.Add(tokens * _model.InputCostPerMillion / 1_000_000.0, tag);
                activity?.SetTag("gen_ai.usage.input_tokens", tokens);
                var byText = new Dictionary<string, float[]>(StringComparer.Ordinal);
                for (var i = 0; i < distinct.Count; i++)
                {
                    byText[distinct[i]] = result[i].Vector.ToArray();
                }

                // Tokens are shared out by text length (the provider reports one total per request).
                var totalChars = Math.Max(1, batch.Sum(i => (long)i.Text.Length));
                foreach (var item in batch)
                {
                    item.Done.TrySetResult(new EmbedResult(byText[item.Text], tokens * item.Text.Length / totalChars));
                }

                return;
            }
            catch (Exception ex) when (!_stop.IsCancellationRequested)
            {
                var kind = UpstreamErrors.Kind(ex);
                _metrics.Upstream.Add(1, new KeyValuePair<string, object?>("model", _model.Name), new KeyValuePair<string, object?>("outcome", kind));
                activity?.SetStatus(ActivityStatusCode.Error, kind);
                Log.UpstreamFailed(_logger, _model.Name, _provider.Options.Name, attempt, UpstreamErrors.Describe(ex));
                failures.Add($"attempt {attempt}: {UpstreamErrors.Describe(ex)}");
                if (!UpstreamErrors.Retryable(ex) || attempt == _options.MaxAttempts)
                {
                    break;
                }

                _metrics.Retries.Add(1, new KeyValuePair<string, object?>("model", _model.Name));
                try
                {
                    await Task.Delay(TimeSpan.FromMilliseconds(Random.Shared.NextDouble() * Math.Min(5000, _options.RetryBaseDelay.TotalMilliseconds * Math.Pow(2, attempt - 1))), _time, _stop).ConfigureAwait(false);
                }
                catch (OperationCanceledException)
                {
                    break;
                }
            }
            catch (OperationCanceledException)
            {
                failures.Add("the bridge is shutting down");
                break;
            }
            finally
            {
                if (slot)
                {
                    _provider.Slots.Release();
                }
            }
        }

        var error = new ToolErrorException($"Embedding model '{_model.Name}' failed: {string.Join("; ", failures)}.");
        foreach (var item in batch)
        {
            item.Done.TrySetException(error);
        }
    }

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        try
        {
            await _loop.WaitAsync(TimeSpan.FromSeconds(5)).ConfigureAwait(false);
        }
        catch (TimeoutException)
        {
            // left to finish on its own
        }
    }

    private sealed record Item(string Text, TaskCompletionSource<EmbedResult> Done);
}
