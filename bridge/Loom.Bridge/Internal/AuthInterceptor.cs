using Grpc.Core;
using Grpc.Core.Interceptors;
using Microsoft.AspNetCore.Authentication;
using Microsoft.AspNetCore.Authentication.JwtBearer;
using Microsoft.AspNetCore.Http;
using Microsoft.IdentityModel.Tokens;

namespace Loom.Bridge.Internal;

/// <summary>
/// Who makes a gRPC call: the <c>sub</c> of a valid bearer token (checked by ASP.NET Core's JwtBearer
/// handler) or the name in a client certificate (mutual TLS); null for an anonymous caller. Calls of
/// loom.v1 services without a required credential, or with a bad token, end with UNAUTHENTICATED
/// saying what to fix; health and reflection stay open. The token itself is never logged.
/// </summary>
internal sealed class AuthInterceptor(BridgeOptions options, bool mutualTls, AuditLog? audit = null) : Interceptor
{
    private const string IdentityKey = "loom.identity";
    private const string PolicyKey = "loom.policy";

    /// <summary>The caller's identity, as the interceptor found it (null: anonymous).</summary>
    public static string? IdentityOf(ServerCallContext context) =>
        context.GetHttpContext().Items.TryGetValue(IdentityKey, out var value) ? value as string : null;

    /// <summary>The caller's permissions (its identity's rules in loom.yaml and its token's allow lists).</summary>
    public static PermissionPolicy PolicyOf(ServerCallContext context) =>
        context.GetHttpContext().Items.TryGetValue(PolicyKey, out var value) && value is PermissionPolicy policy ? policy : PermissionPolicy.Unrestricted;

    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        await AuthenticateAsync(context);
        return await continuation(request, context);
    }

    public override async Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        await AuthenticateAsync(context);
        await continuation(requestStream, responseStream, context);
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context, ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        await AuthenticateAsync(context);
        await continuation(request, responseStream, context);
    }

    public override async Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, ServerCallContext context, ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        await AuthenticateAsync(context);
        return await continuation(requestStream, context);
    }

    private async Task AuthenticateAsync(ServerCallContext context)
    {
        var http = context.GetHttpContext();
        if (!context.Method.StartsWith("/loom.", StringComparison.Ordinal))
        {
            return; // grpc.health.v1 and reflection: open.
        }

        string? certificate;
        try
        {
            certificate = mutualTls ? await TlsSetup.AuthenticateCertificateAsync(http) : null;
        }
        catch (InvalidOperationException ex)
        {
            throw Unauthenticated(ex.Message);
        }

        string? identity = certificate;
        if (options.Auth != AuthMode.Off)
        {
            if (http.Request.Headers.Authorization.Count > 0)
            {
                var result = await http.AuthenticateAsync(JwtBearerDefaults.AuthenticationScheme);
                if (!result.Succeeded || result.Principal?.Identity?.Name is not { Length: > 0 } subject)
                {
                    throw Refuse(context, certificate, Explain(result.Failure));
                }

                if (certificate is not null && certificate != subject)
                {
                    throw Refuse(context, subject, $"The token is for '{subject}' but the client certificate names '{certificate}'; use a token and a certificate of the same identity.");
                }

                identity = subject;
                http.User = result.Principal;
            }
            else if (identity is null && options.Auth == AuthMode.Required)
            {
                throw Refuse(context, null, "This bridge requires a credential: send a token (set LOOM_TOKEN to one made with 'loom token create --agent NAME') or, where the bridge uses mutual TLS, a client certificate (LOOM_TLS_CERT, LOOM_TLS_KEY).");
            }
        }

        http.Items[IdentityKey] = identity;
        var admin = identity is not null && (http.User?.HasClaim(c => c.Type == BridgeTokens.AdminClaim && c.Value is "true" or "True") == true
            || (certificate == identity && options.AdminIdentities.Contains(identity, StringComparer.Ordinal)));
        http.Items[PolicyKey] = PermissionPolicy.For(options.Auth, options.Permissions, identity, Claims(http, BridgeTokens.PublishClaim), Claims(http, BridgeTokens.SubscribeClaim), admin);
    }

    /// <summary>An UNAUTHENTICATED refusal, audited as a credential failure (never with the token).</summary>
    private RpcException Refuse(ServerCallContext context, string? identity, string message)
    {
        audit?.Record(new AuditRecord(AuditRecord.Credential, context.Method, "unauthenticated") { Identity = identity, Reason = message, Remote = context.Peer });
        return Unauthenticated(message);
    }

    /// <summary>The topic patterns a token's claim lists (none without a token).</summary>
    private static string[]? Claims(HttpContext http, string type)
    {
        if (http.User?.Identity?.IsAuthenticated != true)
        {
            return null;
        }

        return [.. http.User.FindAll(type).Select(c => c.Value).Where(Loom.Core.Topics.IsValidPattern)];
    }

    private static RpcException Unauthenticated(string message) =>
        StatusMapping.Status(StatusCode.Unauthenticated, message, Loom.Protocol.V1.ErrorCode.Unauthenticated);

    /// <summary>Why a token was refused, with what to do; never the token.</summary>
    private static string Explain(Exception? failure) => failure switch
    {
        SecurityTokenExpiredException expired => $"The token expired at {expired.Expires:yyyy-MM-dd HH:mm:ss} UTC; make a new one with 'loom token create'.",
        SecurityTokenNotYetValidException => "The token is not valid yet (its nbf is in the future); check the clocks of this machine and the bridge's.",
        SecurityTokenInvalidSignatureException or SecurityTokenSignatureKeyNotFoundException => "The token's signature does not match this bridge's key (token_key): it was made for another bridge or altered. Make one with 'loom token create' against this bridge's key.",
        SecurityTokenInvalidIssuerException or SecurityTokenInvalidAudienceException => "The token was not made for a Loom bridge (issuer and audience must be 'loom'); make one with 'loom token create'.",
        SecurityTokenNoExpirationException => "The token has no expiry; make one with 'loom token create'.",
        null => "The authorization header is not 'Bearer <token>'; send the token from 'loom token create' as LOOM_TOKEN.",
        _ => "The token is malformed; send the token printed by 'loom token create' (LOOM_TOKEN), whole.",
    };
}
