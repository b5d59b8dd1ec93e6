using System.Text.RegularExpressions;

namespace Loom.Cli.Internal;

/// <summary>
/// Secrets never live in loom.yaml (issue 16): a value of a field whose name says it holds a
/// secret (a word KEY, SECRET, TOKEN, PASSWORD, PASSWD, CREDENTIAL(S), APIKEY, e.g.
/// <c>OPENAI_API_KEY</c>, <c>db-password</c>) must be a reference to an environment variable
/// (<c>${NAME}</c>, resolved when the run starts) or empty. Names that end in FILE, PATH or DIR
/// hold a path to a key file, which is fine; so do counts such as <c>MAX_TOKENS</c> (TOKENS is
/// not TOKEN).
/// </summary>
internal static partial class SecretFields
{
    private static readonly string[] SecretWords = ["KEY", "SECRET", "TOKEN", "PASSWORD", "PASSWD", "PASSPHRASE", "CREDENTIAL", "CREDENTIALS", "APIKEY", "PRIVATEKEY"];
    private static readonly string[] PathWords = ["FILE", "PATH", "DIR", "FILES", "PATHS", "ID", "NAME", "URL"];

    [GeneratedRegex(@"\$\{[A-Za-z_][A-Za-z0-9_]*\}")]
    private static partial Regex Reference();

    [GeneratedRegex(@"[^A-Za-z0-9]+|(?<=[a-z0-9])(?=[A-Z])")]
    private static partial Regex WordBreak();

    /// <summary>Whether a field named <paramref name="name"/> holds a secret (by its words: <c>apiKey</c>, <c>API_KEY</c> and <c>api-key</c> alike).</summary>
    public static bool IsSecretName(string name)
    {
        var words = WordBreak().Split(name).Where(w => w.Length > 0).Select(w => w.ToUpperInvariant()).ToArray();
        if (words.Length == 0 || PathWords.Contains(words[^1], StringComparer.Ordinal))
        {
            return false;
        }

        return words.Any(w => SecretWords.Contains(w, StringComparer.Ordinal));
    }

    /// <summary>
    /// Why <paramref name="value"/> may not stand in the secret field <paramref name="name"/> (it
    /// is a literal rather than an environment reference), or null when it may. The message never
    /// repeats the value.
    /// </summary>
    public static string? Problem(string name, string value)
    {
        if (!IsSecretName(name) || value.Trim().Length == 0 || Reference().IsMatch(value))
        {
            return null;
        }

        var variable = new string([.. name.ToUpperInvariant().Select(c => char.IsAsciiLetterOrDigit(c) ? c : '_')]);
        return $"holds a literal secret; secrets never live in loom.yaml (it is read by every tool and often committed). "
            + $"Write a reference to an environment variable instead, e.g. '${{{variable}}}', and set {variable} in the environment of 'loom run' "
            + "(a key file's path is fine in a field whose name ends in _FILE or _PATH)";
    }

    /// <summary>
    /// Why <paramref name="value"/> given as the token key's path looks like a key itself (base64
    /// of 32 bytes or more that names no existing file nor a file in an existing folder), or null
    /// when it is a path. Base64 may hold '/', so a separator alone does not make a path.
    /// </summary>
    public static string? TokenKeyProblem(string value, string resolved)
    {
        if (value.Length < 40 || File.Exists(resolved) || value.Contains('\\', StringComparison.Ordinal)
            || (value.Contains('/', StringComparison.Ordinal) && System.IO.Path.GetDirectoryName(resolved) is { } folder && Directory.Exists(folder)))
        {
            return null;
        }

        try
        {
            return Convert.FromBase64String(value).Length >= 32
                ? "looks like a key, not the path of a key file; secrets never live in loom.yaml: give the path of the file that holds the key (e.g. .loom/keys/token.key, made 0600 on first use) and keep the key out of this file"
                : null;
        }
        catch (FormatException)
        {
            return null;
        }
    }
}
