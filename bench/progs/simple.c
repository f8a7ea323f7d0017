/* Return a constant: the cost of one invocation. */
BENCH(simple)
{
    return 0;
}
