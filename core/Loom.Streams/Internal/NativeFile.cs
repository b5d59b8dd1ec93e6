using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Loom.Streams.Internal;

/// <summary>
/// Linux file calls .NET does not expose: fdatasync (a durable write without the inode's
/// timestamps, which fsync would also write each time) and fallocate (blocks reserved ahead of
/// the writes, so a commit does not also have to journal a new block and a new file size).
/// Elsewhere: FileStream.Flush(true) and no preallocation.
/// </summary>
internal static partial class NativeFile
{
    private static readonly bool Linux = OperatingSystem.IsLinux();

    public static void DataSync(FileStream stream)
    {
        if (Linux && fdatasync(stream.SafeFileHandle) == 0)
        {
            return;
        }

        stream.Flush(flushToDisk: true);
    }

    /// <summary>Reserves blocks up to <paramref name="length"/> (the file size grows to it); false where not supported.</summary>
    public static bool Allocate(SafeFileHandle handle, long offset, long length) =>
        Linux && fallocate(handle, 0, offset, length) == 0;

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fdatasync(SafeFileHandle fd);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int fallocate(SafeFileHandle fd, int mode, long offset, long len);
}
