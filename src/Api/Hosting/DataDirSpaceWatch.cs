namespace Perf.Api.Hosting;

/// <summary>
/// Warns in the log when the file system of <c>DATA_DIR</c> runs low, before uplinks are refused for a full disk
/// (the uplink log cannot write) and before the allocator slows down on an almost full one (PUBACK stalls of up to
/// 2 s were seen here: docs/PERFORMANCE.md, "Session of 2026-11-24"). Checked every
/// <see cref="HostSettings.DataDirCheckInterval"/>: one warning when the free space falls below
/// <see cref="HostSettings.DataDirLowSpaceBytes"/>, again every <see cref="RepeatEvery"/> while it stays there, and
/// one information line when it is back above. The gauge <c>perf_host_data_dir_free</c> carries the same figure for
/// alerts.
/// </summary>
internal sealed class DataDirSpaceWatch : BackgroundService
{
    /// <summary>How often a low-space warning is repeated while the space stays low.</summary>
    internal static readonly TimeSpan RepeatEvery = TimeSpan.FromMinutes(10);

    private readonly string _dataDir;
    private readonly long _threshold;
    private readonly TimeSpan _interval;
    private readonly Func<long> _freeBytes;
    private readonly TimeProvider _time;
    private readonly ILogger _logger;
    private long _warnedAt = -1;

    public DataDirSpaceWatch(HostSettings settings, ILogger<DataDirSpaceWatch> logger)
        : this(settings.DataDir, settings.DataDirLowSpaceBytes, settings.DataDirCheckInterval, FreeBytesOf(settings.DataDir), TimeProvider.System, logger)
    {
    }

    internal DataDirSpaceWatch(string dataDir, long threshold, TimeSpan interval, Func<long> freeBytes, TimeProvider time, ILogger logger)
    {
        _dataDir = Path.GetFullPath(dataDir);
        _threshold = threshold;
        _interval = interval;
        _freeBytes = freeBytes;
        _time = time;
        _logger = logger;
    }

    /// <summary>True while the last check found the space below the threshold.</summary>
    internal bool Low => _warnedAt >= 0;

    /// <summary>The free bytes the last check saw (-1 before the first, or when it could not read them).</summary>
    internal long LastFree { get; private set; } = -1;

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        if (_threshold <= 0)
        {
            return;
        }

        using var timer = new PeriodicTimer(_interval, _time);
        do
        {
            Check();
        }
        while (await WaitAsync(timer, stoppingToken));
    }

    private static async Task<bool> WaitAsync(PeriodicTimer timer, CancellationToken stoppingToken)
    {
        try
        {
            return await timer.WaitForNextTickAsync(stoppingToken);
        }
        catch (OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>One check: logs a crossing (or a repeat while low) and returns the free bytes seen.</summary>
    internal long Check()
    {
        long free;
        try
        {
            free = _freeBytes();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            // Never fatal: a background service's exception would stop the host.
            HostLog.DataDirSpaceUnknown(_logger, _dataDir, e.Message);
            return LastFree = -1;
        }

        LastFree = free;
        var now = _time.GetTimestamp();
        if (free < _threshold)
        {
            if (_warnedAt < 0 || _time.GetElapsedTime(_warnedAt, now) >= RepeatEvery)
            {
                HostLog.DataDirLowSpace(_logger, _dataDir, free / (1024 * 1024), _threshold / (1024 * 1024));
                _warnedAt = now;
            }
        }
        else if (_warnedAt >= 0)
        {
            HostLog.DataDirSpaceRecovered(_logger, _dataDir, free / (1024 * 1024), _threshold / (1024 * 1024));
            _warnedAt = -1;
        }

        return free;
    }

    private static Func<long> FreeBytesOf(string dataDir)
    {
        var full = Path.GetFullPath(dataDir);
        return () => new DriveInfo(full).AvailableFreeSpace;
    }
}
