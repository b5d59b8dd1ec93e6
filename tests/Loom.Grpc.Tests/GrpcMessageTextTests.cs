using Loom.Grpc.Internal;

namespace Loom.Grpc.Tests;

public class GrpcMessageTextTests
{
    [Theory]
    [InlineData("", "")]
    [InlineData("Hello", "Hello")]
    [InlineData("No escaping: !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~ 0123456789", "No escaping: !\"#$&'()*+,-./:;<=>?@[\\]^_`{|}~ 0123456789")]
    [InlineData("my favorite character is \u0000", "my favorite character is %00")]
    [InlineData("my favorite character is %", "my favorite character is %25")]
    [InlineData("100% sure", "100%25 sure")]
    [InlineData("line1\nline2\r\ttab\u007F", "line1%0Aline2%0D%09tab%7F")]
    // The interop suite's special_status_message.
    [InlineData("\t\ntest with whitespace\r\nand Unicode BMP \u263A and non-BMP \U0001F608\t\n",
        "%09%0Atest with whitespace%0D%0Aand Unicode BMP %E2%98%BA and non-BMP %F0%9F%98%88%09%0A")]
    [InlineData("héllo 日本", "h%C3%A9llo %E6%97%A5%E6%9C%AC")]
    public void Encode_follows_the_spec_and_decode_inverts_it(string text, string wire)
    {
        Assert.Equal(wire, GrpcMessageText.Encode(text));
        Assert.Equal(text, GrpcMessageText.Decode(wire));
    }

    [Fact]
    public void Encode_leaves_spaces_and_punctuation_alone_unlike_Uri_EscapeDataString()
    {
        Assert.Equal("a b/c?d", GrpcMessageText.Encode("a b/c?d"));
        Assert.NotEqual(Uri.EscapeDataString("a b/c?d"), GrpcMessageText.Encode("a b/c?d"));
    }

    [Theory]
    [InlineData("%e2%98%ba", "\u263A")]       // lowercase hex is accepted
    [InlineData("100%", "100%")]              // truncated sequence is kept
    [InlineData("bad %G1 seq", "bad %G1 seq")] // not hex: kept
    [InlineData("end %4", "end %4")]
    [InlineData("%FF", "\uFFFD")]             // not UTF-8: replacement character, never an error
    [InlineData("%E2%98", "\uFFFD")]
    public void Decode_never_fails_on_bad_input(string wire, string expected)
    {
        Assert.Equal(expected, GrpcMessageText.Decode(wire));
    }

    [Fact]
    public void Encoded_output_is_always_printable_ascii()
    {
        var all = string.Concat(Enumerable.Range(0, 0x3000).Where(c => c is < 0xD800 or > 0xDFFF).Select(c => (char)c));
        var encoded = GrpcMessageText.Encode(all);
        Assert.All(encoded, c => Assert.InRange(c, ' ', '~'));
        Assert.Equal(all, GrpcMessageText.Decode(encoded));
    }
}
