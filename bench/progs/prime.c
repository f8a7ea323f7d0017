/* Number of primes below the u64 limit at the start of memory, by trial division. */
BENCH(prime)
{
    __u64 limit = *(__u64 *)mem, count = 0;
    for (__u64 n = 2; n < limit; n++) {
        int is_prime = 1;
        for (__u64 d = 2; d * d <= n; d++) {
            if (n % d == 0) {
                is_prime = 0;
                break;
            }
        }
        count += is_prime;
    }
    return count;
}
