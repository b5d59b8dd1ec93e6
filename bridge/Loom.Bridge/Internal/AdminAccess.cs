using Microsoft.AspNetCore.Authentication.Certificate;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Authorization;
using Microsoft.AspNetCore.Authorization.Policy;
using Microsoft.AspNetCore.Http;

namespace Loom.Bridge.Internal;

/// <summary>
/// The HTTP admin surface's authorization (issue 16), on ASP.NET Core policies: with auth on,
/// <c>/v1/*</c> and <c>/metrics</c> need a read-only or admin credential (<see cref="ReadPolicy"/>),
/// <c>/mcp</c> an admin one (<see cref="AdminPolicy"/>). A credential is a bearer token with the
/// <c>loom_admin</c> or <c>loom_read</c> claim, or a client certificate whose identity is in
/// <see cref="BridgeOptions.AdminIdentities"/> or <see cref="BridgeOptions.ReadOnlyIdentities"/>.
/// </summary>
internal static class AdminAccess
{
    public const string AdminPolicy = "loom.admin";
    public const string ReadPolicy = "loom.read";

    /// <summary>How much of the admin surface a request may use.</summary>
    public enum Level
    {
        None,
        Read,
        Admin,
    }

    public static void AddPolicies(AuthorizationOptions authorization, BridgeOptions options)
    {
        // Under mutual TLS the certificate handler authenticates too; the policy merges both principals.
        string[] schemes = options.TlsClientCaFile is null
            ? [JwtBearerDefaults.AuthenticationScheme]
            : [JwtBearerDefaults.AuthenticationScheme, CertificateAuthenticationDefaults.AuthenticationScheme];
        authorization.AddPolicy(AdminPolicy, p => p.AddAuthenticationSchemes(schemes).AddRequirements(new Requirement(Level.Admin, options)));
        authorization.AddPolicy(ReadPolicy, p => p.AddAuthenticationSchemes(schemes).AddRequirements(new Requirement(Level.Read, options)));
    }

    /// <summary>The level of <paramref name="context"/>'s credential (its <c>User</c> set by the policy's authentication, and its client certificate).</summary>
    public static Level Of(HttpContext context, BridgeOptions options)
    {
        if (options.Auth == AuthMode.Off)
        {
            return Level.None;
        }

        // The principal the policy's schemes made: a token's (JwtBearer) and, under mutual TLS, the
        // client certificate's (the certificate handler), merged when both are presented.
        var level = Level.None;
        foreach (var identity in context.User.Identities.Where(i => i.IsAuthenticated))
        {
            if (identity.HasClaim(c => c.Type == BridgeTokens.AdminClaim && c.Value is "true" or "True"))
            {
                return Level.Admin;
            }

            if (identity.HasClaim(c => c.Type == BridgeTokens.ReadOnlyClaim && c.Value is "true" or "True"))
            {
                level = Level.Read;
            }

            // An identity (token subject or certificate name) listed in admin_identities / read_only_identities.
            if (identity.Name is { Length: > 0 } name)
            {
                if (options.AdminIdentities.Contains(name, StringComparer.Ordinal))
                {
                    return Level.Admin;
                }

                if (options.ReadOnlyIdentities.Contains(name, StringComparer.Ordinal))
                {
                    level = Level.Read;
                }
            }
        }

        return level;
    }

    /// <summary>
    /// The identity a request presents (token subject or certificate name, as authenticated), for
    /// messages and the audit log; before authentication, the name its client certificate carries; null when anonymous.
    /// </summary>
    public static string? IdentityOf(HttpContext context) =>
        context.User.Identities.FirstOrDefault(i => i.IsAuthenticated)?.Name ?? TlsSetup.IdentityOf(context.Connection.ClientCertificate);

    internal sealed class Requirement(Level level, BridgeOptions options) : AuthorizationHandler<Requirement>, IAuthorizationRequirement
    {
        public Level RequiredLevel => level;

        protected override Task HandleRequirementAsync(AuthorizationHandlerContext context, Requirement requirement)
        {
            if (context.Resource is HttpContext http && Of(http, options) >= requirement.RequiredLevel)
            {
                context.Succeed(requirement);
            }

            return Task.CompletedTask;
        }
    }

    /// <summary>Refusals with a body that says what to send (401: no or a bad credential; 403: a credential without the needed level).</summary>
    internal sealed class ResultHandler(Action<HttpContext, string>? refused) : IAuthorizationMiddlewareResultHandler
    {
        private readonly AuthorizationMiddlewareResultHandler _default = new();

        public async Task HandleAsync(RequestDelegate next, HttpContext context, AuthorizationPolicy policy, PolicyAuthorizationResult authorizeResult)
        {
            if (authorizeResult.Succeeded)
            {
                await _default.HandleAsync(next, context, policy, authorizeResult);
                return;
            }

            var admin = policy.Requirements.OfType<Requirement>().Any(r => r.RequiredLevel == Level.Admin);
            var needed = admin ? "an admin credential" : "an admin or read-only credential";
            var mint = admin ? "loom token create --agent NAME --admin" : "loom token create --agent NAME --read-only";
            string message;
            if (authorizeResult.Challenged)
            {
                context.Response.StatusCode = StatusCodes.Status401Unauthorized;
                context.Response.Headers.WWWAuthenticate = "Bearer";
                message = $"{context.Request.Path} on this bridge needs {needed}: send 'Authorization: Bearer <token>' with a token from '{mint}' (loom list, loom logs and loom mcp take --token or LOOM_TOKEN), or a client certificate the bridge maps to admin (admin_identities).";
            }
            else
            {
                context.Response.StatusCode = StatusCodes.Status403Forbidden;
                message = $"{context.Request.Path} on this bridge needs {needed}; identity '{IdentityOf(context)}' has none. Mint one with '{mint}'.";
            }

            refused?.Invoke(context, message);
            context.Response.ContentType = "text/plain; charset=utf-8";
            await context.Response.WriteAsync(message + "\n");
        }
    }
}
