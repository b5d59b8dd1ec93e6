using System.Security.Claims;
using System.Security.Cryptography;
using Microsoft.IdentityModel.JsonWebTokens;
using Microsoft.IdentityModel.Tokens;

namespace Loom.Bridge;

/// <summary>How the bridge treats tokens (<see cref="BridgeOptions.Auth"/>).</summary>
public enum AuthMode
{
    /// <summary>Tokens are ignored; every caller is trusted (loopback development).</summary>
    Off,

    /// <summary>A token, when sent, must be valid and binds the agent id; calls without one are let in.</summary>
    Optional,

    /// <summary>Every call needs a valid token or a client certificate (mutual TLS).</summary>
    Required,
}

/// <summary>
/// The bridge's signed tokens: JWTs (HS256) with the agent's identity as <c>sub</c>, issuer and audience
/// <c>loom</c>, an expiry, and the topic patterns it may publish and subscribe to (<c>loom_pub</c>, <c>loom_sub</c>).
/// </summary>
public static class BridgeTokens
{
    /// <summary>Issuer and audience of every token.</summary>
    public const string Issuer = "loom";

    /// <summary>The claim listing the topic patterns the token's agent may publish to.</summary>
    public const string PublishClaim = "loom_pub";

    /// <summary>The claim listing the topic patterns the token's agent may subscribe to.</summary>
    public const string SubscribeClaim = "loom_sub";

    /// <summary>The claim marking an admin token (the HTTP admin surface).</summary>
    public const string AdminClaim = "loom_admin";

    /// <summary>The claim marking a read-only token: <c>GET /v1/*</c> and <c>/metrics</c>, not <c>/mcp</c>.</summary>
    public const string ReadOnlyClaim = "loom_read";

    /// <summary>The default key file: <c>.loom/keys/token.key</c> under the current directory.</summary>
    public static string DefaultKeyFile => Path.GetFullPath(Path.Combine(".loom", "keys", "token.key"));

    /// <summary>
    /// The signing key in <paramref name="keyFile"/> (base64 of 32 or more random bytes), made (0600, in a
    /// 0700 folder) when the file does not exist.
    /// </summary>
    /// <exception cref="InvalidOperationException">The file exists but holds no key of at least 32 bytes.</exception>
    public static SymmetricSecurityKey LoadOrCreateKey(string keyFile)
    {
        if (!File.Exists(keyFile))
        {
            var folder = Path.GetDirectoryName(Path.GetFullPath(keyFile))!;
            if (!Directory.Exists(folder))
            {
                if (OperatingSystem.IsWindows())
                {
                    Directory.CreateDirectory(folder);
                }
                else
                {
                    Directory.CreateDirectory(folder, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
                }
            }

            try
            {
                DevCertificates.WriteSecret(keyFile, Convert.ToBase64String(RandomNumberGenerator.GetBytes(32)), overwrite: false);
            }
            catch (IOException) when (File.Exists(keyFile))
            {
                // Made by another process at the same time: use theirs.
            }
        }

        byte[] key;
        try
        {
            key = Convert.FromBase64String(File.ReadAllText(keyFile).Trim());
        }
        catch (FormatException)
        {
            throw new InvalidOperationException($"The token key file '{keyFile}' (token_key) is not base64; delete it to have a new key made (every token signed with the old one stops working).");
        }

        return key.Length >= 32
            ? new SymmetricSecurityKey(key) { KeyId = "loom" }
            : throw new InvalidOperationException($"The token key in '{keyFile}' (token_key) is {key.Length} bytes; it needs at least 32.");
    }

    /// <summary>Mints a token for <paramref name="agent"/>, valid for <paramref name="lifetime"/>.</summary>
    public static string Create(string keyFile, string agent, IReadOnlyList<string> allowPublish, IReadOnlyList<string> allowSubscribe, TimeSpan lifetime, bool admin = false, DateTimeOffset? now = null, bool readOnly = false)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(agent);
        var issued = now ?? DateTimeOffset.UtcNow;
        var claims = new Dictionary<string, object>(StringComparer.Ordinal)
        {
            [PublishClaim] = allowPublish.ToArray(),
            [SubscribeClaim] = allowSubscribe.ToArray(),
        };
        if (admin)
        {
            claims[AdminClaim] = true;
        }

        if (readOnly)
        {
            claims[ReadOnlyClaim] = true;
        }

        var descriptor = new SecurityTokenDescriptor
        {
            Issuer = Issuer,
            Audience = Issuer,
            Subject = new ClaimsIdentity([new Claim(JwtRegisteredClaimNames.Sub, agent)]),
            Claims = claims,
            IssuedAt = issued.UtcDateTime,
            NotBefore = issued.UtcDateTime.AddSeconds(-30),
            Expires = (issued + lifetime).UtcDateTime,
            SigningCredentials = new SigningCredentials(LoadOrCreateKey(keyFile), SecurityAlgorithms.HmacSha256),
        };
        return new JsonWebTokenHandler { SetDefaultTimesOnTokenCreation = false }.CreateToken(descriptor);
    }

    /// <summary>What the bridge checks in a token: its signature with this key, issuer, audience and lifetime (30 s of clock skew).</summary>
    public static TokenValidationParameters Validation(SymmetricSecurityKey key) => new()
    {
        ValidIssuer = Issuer,
        ValidAudience = Issuer,
        IssuerSigningKey = key,
        ValidAlgorithms = [SecurityAlgorithms.HmacSha256],
        RequireExpirationTime = true,
        RequireSignedTokens = true,
        ClockSkew = TimeSpan.FromSeconds(30),
        NameClaimType = JwtRegisteredClaimNames.Sub,
    };
}
