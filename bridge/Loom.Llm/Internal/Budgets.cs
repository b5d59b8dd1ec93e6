namespace Loom.Llm.Internal;

/// <summary>Tokens and cost spent per agent and per thread, and the budgets they are held to.</summary>
internal sealed class BudgetLedger
{
    private readonly LlmBudgetOptions _options;
    private readonly Lru<string, Spend> _agents;
    private readonly Lru<string, Spend> _threads;

    public BudgetLedger(LlmBudgetOptions options)
    {
        _options = options;
        _agents = new Lru<string, Spend>(options.MaxTrackedThreads, long.MaxValue, StringComparer.Ordinal);
        _threads = new Lru<string, Spend>(options.MaxTrackedThreads, long.MaxValue, StringComparer.Ordinal);
    }

    public long AgentLimit(string agent) => _options.Agents.TryGetValue(agent, out var limit) ? limit : _options.PerAgentTokens;

    public long ThreadLimit => _options.PerThreadTokens;

    public Spend Agent(string agent) => _agents.TryGet(agent, out var s) ? s : default;

    public Spend Thread(string thread) => thread.Length > 0 && _threads.TryGet(thread, out var s) ? s : default;

    /// <summary>Null when the call may go ahead; else the scope whose budget is spent and the message.</summary>
    public (string Scope, string Message)? Check(string agent, string thread)
    {
        var agentLimit = AgentLimit(agent);
        if (agentLimit > 0 && Agent(agent).Tokens >= agentLimit)
        {
            return ("agent", $"Agent '{agent}' has spent {Agent(agent).Tokens} tokens of its budget of {agentLimit} (llm.budgets); raise the budget in loom.yaml or wait for a new bridge run.");
        }

        if (ThreadLimit > 0 && thread.Length > 0 && Thread(thread).Tokens >= ThreadLimit)
        {
            return ("thread", $"Thread '{thread}' has spent {Thread(thread).Tokens} tokens of its budget of {ThreadLimit} (llm.budgets.per_thread_tokens); start a new thread or raise the budget.");
        }

        return null;
    }

    public void Charge(string agent, string thread, long tokens, double cost)
    {
        if (tokens <= 0 && cost <= 0)
        {
            return;
        }

        _agents.Update(agent, static () => default, s => new Spend(s.Tokens + tokens, s.Cost + cost));
        if (thread.Length > 0)
        {
            _threads.Update(thread, static () => default, s => new Spend(s.Tokens + tokens, s.Cost + cost));
        }
    }

    internal readonly record struct Spend(long Tokens, double Cost);
}
